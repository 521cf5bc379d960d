pub fn run(_a: crate::cli::DemoArgs) -> anyhow::Result<std::process::ExitCode> { todo!() }
