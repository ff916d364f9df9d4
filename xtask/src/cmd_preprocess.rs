use clap::Args;

#[derive(Args)]
pub struct PreprocessArgs {}


pub fn run_preprocess(_args: PreprocessArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
