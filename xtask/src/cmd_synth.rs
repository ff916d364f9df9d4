use clap::Args;

#[derive(Args)]
pub struct SynthArgs {}

pub fn run_synth(_args: SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
