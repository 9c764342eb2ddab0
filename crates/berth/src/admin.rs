//! TODO(infra helper): `berth admin …` operator commands (design §7).

use clap::Args;

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub db: crate::cli::DbArgs,
}

pub async fn run(_args: AdminArgs) -> anyhow::Result<()> {
    anyhow::bail!("admin commands are not built yet")
}
