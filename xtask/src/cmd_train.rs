use clap::Args;

#[derive(Args)]
pub struct TrainArgs {}
#[derive(Args)]
pub struct EvalArgs {}
#[derive(Args)]
pub struct PredictArgs {}
#[derive(Args)]
pub struct QuickstartArgs {}

pub fn run_train(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn run_eval(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn run_predict(_args: PredictArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn run_quickstart(_args: QuickstartArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
