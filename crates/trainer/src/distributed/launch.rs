//! What the launcher says about the job, against what MPI sees: a launch
//! whose tasks MPI does not join (Slurm's `srun` without a PMI plugin, or
//! another MPI's `mpirun`) would start independent copies of the training,
//! each on all the data, writing one run directory. It is refused.

use std::fmt;

/// A launcher's variable that holds the job's number of tasks, in the
/// order they are trusted: the MPI launchers' own first (an `mpirun`
/// inside a Slurm allocation starts its own number of ranks), then Slurm's
/// step, then Slurm's job.
const TASK_COUNTS: [(&str, Launcher); 4] = [
    ("OMPI_COMM_WORLD_SIZE", Launcher::Mpirun),
    ("PMI_SIZE", Launcher::Pmi),
    ("SLURM_STEP_NUM_TASKS", Launcher::Slurm),
    ("SLURM_NTASKS", Launcher::Slurm),
];

/// Who started the tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Launcher {
    /// OpenMPI's `mpirun`/`mpiexec`.
    Mpirun,
    /// A PMI launcher (MPICH's Hydra, `srun --mpi=pmi2`).
    Pmi,
    /// Slurm (`srun`, or the batch script itself).
    Slurm,
}

/// The launcher started `tasks` tasks, but MPI sees a world of `world`
/// ranks: the tasks would train as separate copies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LaunchMismatch {
    launcher: Launcher,
    variable: &'static str,
    tasks: usize,
    world: usize,
    mpi_built: bool,
}

impl LaunchMismatch {
    /// The launcher's variable that gave the task count.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
    /// Tasks the launcher started.
    pub fn tasks(&self) -> usize {
        self.tasks
    }
    /// Ranks MPI sees.
    pub fn world(&self) -> usize {
        self.world
    }
}

impl fmt::Display for LaunchMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (who, what) = match self.launcher {
            Launcher::Slurm => ("Slurm", "tasks"),
            Launcher::Mpirun => ("mpirun", "processes"),
            Launcher::Pmi => ("the PMI launcher", "processes"),
        };
        write!(
            f,
            "{who} started {tasks} {what} ({var}={tasks}), but MPI sees {world} rank{s}: \
             they would train as {tasks} separate copies, each on all the data, into one run \
             directory, so this one refuses to start. ",
            tasks = self.tasks,
            var = self.variable,
            world = self.world,
            s = if self.world == 1 { "" } else { "s" },
        )?;
        if !self.mpi_built {
            return write!(
                f,
                "This binary was built without MPI: build it with \
                 `cargo build --release -p xtask --features mpi` and launch that one."
            );
        }
        match self.launcher {
            Launcher::Slurm => write!(
                f,
                "The likely cause: srun gave the tasks no PMI, because its MPI plugin is the \
                 cluster's MpiDefault (often `none`). Launch with `srun --mpi=pmix` (or export \
                 SLURM_MPI_TYPE=pmix; `srun --mpi=list` shows the plugins this Slurm has)."
            ),
            Launcher::Mpirun | Launcher::Pmi => write!(
                f,
                "The likely cause: the launcher belongs to another MPI library than the one \
                 this binary was built with. Launch it with the `mpirun` of that library \
                 (OpenMPI: `mpirun --version`)."
            ),
        }
    }
}

/// Compares the job's task count, as the first launcher variable of
/// `var` gives it, with MPI's world size. `mpi_built`: whether this
/// binary has MPI (for the advice).
pub(crate) fn check(
    var: impl Fn(&str) -> Option<String>,
    world: usize,
    mpi_built: bool,
) -> Result<(), LaunchMismatch> {
    let Some((variable, launcher, tasks)) = TASK_COUNTS.iter().find_map(|&(name, launcher)| {
        let tasks = var(name)?.trim().parse::<usize>().ok()?;
        Some((name, launcher, tasks))
    }) else {
        return Ok(());
    };
    if tasks == world {
        return Ok(());
    }
    Err(LaunchMismatch {
        launcher,
        variable,
        tasks,
        world,
        mpi_built,
    })
}

/// Whether this process was started by an MPI launcher (`mpirun`/`mpiexec`
/// of OpenMPI or MPICH, or Slurm's `srun` with PMI/PMIx): the variable that
/// says so, with its value.
pub(crate) fn mpi_launch_variable() -> Option<(&'static str, String)> {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|v| (name, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn srun_without_pmi_is_refused_naming_the_plugin() {
        let e = check(
            env(&[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_NTASKS", "2")]),
            1,
            true,
        )
        .unwrap_err();
        assert_eq!(
            (e.variable(), e.tasks(), e.world()),
            ("SLURM_STEP_NUM_TASKS", 2, 1)
        );
        let msg = e.to_string();
        assert!(
            msg.contains("Slurm started 2 tasks (SLURM_STEP_NUM_TASKS=2)"),
            "{msg}"
        );
        assert!(msg.contains("MPI sees 1 rank:"), "{msg}");
        assert!(msg.contains("srun --mpi=pmix"), "{msg}");
        let no_mpi = check(env(&[("SLURM_NTASKS", "4")]), 1, false).unwrap_err();
        assert!(no_mpi.to_string().contains("--features mpi"), "{no_mpi}");
    }

    #[test]
    fn agreeing_launchers_and_no_launcher_pass() {
        assert_eq!(check(env(&[]), 1, true), Ok(()));
        assert_eq!(
            check(env(&[("SLURM_STEP_NUM_TASKS", "1")]), 1, true),
            Ok(())
        );
        assert_eq!(check(env(&[("SLURM_NTASKS", "2")]), 2, true), Ok(()));
        // mpirun inside a Slurm allocation: mpirun's count is the one that counts.
        assert_eq!(
            check(
                env(&[("OMPI_COMM_WORLD_SIZE", "4"), ("SLURM_NTASKS", "2")]),
                4,
                true
            ),
            Ok(())
        );
        // An unreadable value says nothing.
        assert_eq!(check(env(&[("SLURM_NTASKS", "2(x3)")]), 1, true), Ok(()));
    }

    #[test]
    fn another_mpirun_is_refused() {
        let e = check(env(&[("OMPI_COMM_WORLD_SIZE", "2")]), 1, true).unwrap_err();
        assert!(
            e.to_string().starts_with("mpirun started 2 processes"),
            "{e}"
        );
        let e = check(env(&[("PMI_SIZE", "3")]), 1, true).unwrap_err();
        assert_eq!(e.variable(), "PMI_SIZE");
    }
}
