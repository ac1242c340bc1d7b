//! One module per command. Each takes the [`App`] and its arguments and returns an
//! [`Outcome`]; none prints anything itself.

pub mod add;
pub mod check;
pub mod delete;
pub mod list;
pub mod location;
pub mod moves;
pub mod role;
pub mod status;
pub mod stonith;

use std::time::Duration;

use crate::App;
use crate::cli::{Command, LocationCmd, ResourceCmd, StonithCmd};
use crate::error::{Error, Result};
use crate::ids;
use crate::output::Outcome;
use crate::wait::{Goal, wait_for};

/// Read-decide-write attempts before giving up on a CIB that keeps changing.
pub const ATTEMPTS: u32 = vm_pcmk::tools::DEFAULT_ATTEMPTS;

/// Run one command.
pub fn dispatch(app: &App, command: &Command) -> Result<Outcome> {
    match command {
        Command::Resource(cmd) => match cmd {
            ResourceCmd::Add {
                domains,
                node,
                migrate,
                batch,
                guest_node,
            } => add::run(
                app,
                &domains.names(),
                node,
                add::AddOpts {
                    migrate: *migrate,
                    batch: *batch,
                    guest_node,
                },
            ),
            ResourceCmd::Delete {
                domains,
                wait,
                force,
            } => delete::run(app, &domains.names(), wait.wait, *force),
            ResourceCmd::Start { domains, wait } => {
                role::run(app, &domains.names(), role::Role::Started, wait.wait)
            }
            ResourceCmd::Stop { domains, wait } => {
                role::run(app, &domains.names(), role::Role::Stopped, wait.wait)
            }
            ResourceCmd::Move {
                domain,
                node,
                wait,
                keep,
                no_wait,
            } => moves::run_move(
                app,
                domain,
                node.as_deref(),
                moves::MoveOpts {
                    wait: if *no_wait {
                        None
                    } else {
                        Some(wait.wait.unwrap_or(DEFAULT_WAIT_SECS))
                    },
                    keep: *keep,
                },
            ),
            ResourceCmd::Unmove { domain } => moves::run_unmove(app, domain),
            ResourceCmd::List { domain, node } => {
                list::run_list(app, domain.as_deref(), node.as_deref())
            }
            ResourceCmd::Show { domain } => list::run_show(app, domain),
        },
        Command::Location(LocationCmd::Move { domain, before }) => {
            location::run(app, domain.as_deref(), before.as_deref())
        }
        Command::Check(args) => check::run(app, args),
        Command::Status(_) => status::run(app),
        Command::Stonith(cmd) => match cmd {
            StonithCmd::Keygen {
                cluster,
                members,
                fence,
            } => stonith::keygen(app, cluster, members, fence),
            StonithCmd::Token {
                domain,
                resource,
                password_file,
                md,
            } => stonith::token(domain, resource.as_deref(), password_file.as_deref(), *md),
            StonithCmd::GuestConfig {
                cluster,
                members,
                key_file,
                timeout,
                legacy,
                password_file,
                md,
                syntax,
            } => stonith::guest_config(
                cluster,
                members,
                stonith::GuestConfigOpts {
                    key_file,
                    timeout: *timeout,
                    legacy: *legacy,
                    password_file: password_file.as_deref(),
                    md: *md,
                    syntax: *syntax,
                },
            ),
            StonithCmd::ClientConfig {
                attributes,
                resource,
                bad_value,
                syntax,
            } => stonith::client_config(attributes, resource, bad_value, *syntax),
        },
    }
}

/// Wait used when a command waits without being told how long.
pub const DEFAULT_WAIT_SECS: u64 = 120;

/// Check every domain name; the first bad one is the error.
pub fn check_domains(domains: &[String]) -> Result<()> {
    for d in domains {
        ids::check_name("domain", d)?;
    }
    Ok(())
}

/// Wait for `targets` for `secs`; a timeout is [`Error::Timeout`] naming what did not get there.
pub fn wait_goals(app: &App, targets: &[(String, Goal)], secs: u64) -> Result<()> {
    match wait_for(&app.pcmk, targets, Duration::from_secs(secs))? {
        Ok(()) => Ok(()),
        Err(missed) => Err(Error::Timeout {
            secs,
            missed: missed
                .0
                .iter()
                .map(|(r, g, now)| format!("{r} is {now}, not {}", g.describe()))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}
