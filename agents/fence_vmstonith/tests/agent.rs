//! The built `fence_vmstonith` binary against a fake host (see `common`): exit codes, output,
//! the trust checks on replies, retries and timeouts, stdin options, metadata.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use common::{Answer, FakeHost, agent, done, run, strings};
use vm_proto::{ErrorCode, RetryReason};
use vm_seal::{Action, FenceReply, Name, Outcome, PowerState};

const LIMIT: Duration = Duration::from_secs(30);

fn args(host: &FakeHost, extra: &[&str]) -> Vec<String> {
    let mut a = strings(extra);
    a.extend(host.agent_args());
    a
}

#[test]
fn off_succeeds_on_a_confirmed_reply() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        assert_eq!(r.action, Action::Off);
        assert_eq!(r.target.as_ref().map(Name::as_str), Some("web2"));
        assert_eq!(r.requester.as_str(), "web1");
        assert!(r.timeout <= Duration::from_secs(40) && r.timeout > Duration::from_secs(30));
        done(PowerState::Off, "web2 is off")
    });
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "Success: Powered OFF\n");
    assert_eq!(host.seen().len(), 1);
}

#[test]
fn reboot_reset_and_on() {
    let host = FakeHost::start(|_, req| {
        done(
            PowerState::On,
            &format!("{} done", req.sealed().request.action),
        )
    });
    for (action, printed) in [
        ("reboot", "Success: Rebooted\n"),
        ("reset", "Success: Rebooted\n"),
        ("on", "Success: Powered ON\n"),
    ] {
        let r = agent(&args(&host, &["-o", action, "-n", "web2"]), LIMIT);
        assert_eq!((r.code, r.stdout.as_str()), (0, printed), "{r:?}");
    }
    let actions: Vec<Action> = host
        .seen()
        .iter()
        .map(|i| i.sealed().request.action)
        .collect();
    assert_eq!(actions, [Action::Reboot, Action::Reboot, Action::On]);
}

#[test]
fn status_exit_codes() {
    let host =
        FakeHost::start(
            |_, req| match req.sealed().request.target.as_ref().unwrap().as_str() {
                "up" => done(PowerState::On, "running on h1"),
                "down" => done(PowerState::Off, "stopped"),
                _ => done(PowerState::Unknown, "no idea"),
            },
        );
    let r = agent(&args(&host, &["-o", "status", "-n", "up"]), LIMIT);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Status: ON\n"), "{r:?}");
    let r = agent(&args(&host, &["-o", "status", "-n", "down"]), LIMIT);
    assert_eq!((r.code, r.stdout.as_str()), (2, "Status: OFF\n"), "{r:?}");
    let r = agent(&args(&host, &["-o", "status", "-n", "other"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no idea"), "{r:?}");
}

#[test]
fn a_reply_under_another_key_is_a_failure() {
    let host = FakeHost::start(|_, _| {
        Answer::ReplyWrongKey(FenceReply::new(Outcome::Done, PowerState::Off, "forged"))
    });
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("cannot be trusted"), "{r:?}");
    assert_eq!(host.seen().len(), 1, "an untrusted reply is not retried");
}

#[test]
fn a_reply_bound_to_another_request_is_a_failure() {
    let host = FakeHost::start(|_, _| {
        Answer::ReplyOtherNonce(FenceReply::new(Outcome::Done, PowerState::Off, "replayed"))
    });
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("authentication failed"), "{r:?}");
}

#[test]
fn refused_failed_and_timed_out_outcomes_are_failures() {
    for outcome in [Outcome::Refused, Outcome::Failed, Outcome::TimedOut] {
        let host = FakeHost::start(move |_, _| {
            Answer::Reply(FenceReply::new(
                outcome,
                PowerState::Unknown,
                "web1 may not fence web9",
            ))
        });
        let r = agent(&args(&host, &["-o", "off", "-n", "web9"]), LIMIT);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.contains("off of web9 failed") && r.stderr.contains("web1 may not fence web9"),
            "{r:?}"
        );
        assert_eq!(host.seen().len(), 1);
    }
}

#[test]
fn an_error_answer_is_a_failure() {
    let host = FakeHost::start(|_, _| Answer::Error(ErrorCode::Forbidden, "not from here"));
    let r = agent(&args(&host, &["-o", "monitor"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("forbidden") && r.stderr.contains("not from here"),
        "{r:?}"
    );
    assert_eq!(host.seen().len(), 1);
}

#[test]
fn retry_answers_are_retried_with_fresh_requests() {
    let host = FakeHost::start(|n, _| match n {
        0 => Answer::Retry(RetryReason::LinkChanged),
        1 => Answer::Retry(RetryReason::NoModule),
        _ => done(PowerState::Off, "web2 is off"),
    });
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.took >= Duration::from_secs(2), "{r:?}");
    let seen = host.seen();
    assert_eq!(seen.len(), 3);
    let nonces: HashSet<_> = seen.iter().map(|i| i.sealed().header.nonce).collect();
    assert_eq!(nonces.len(), 3, "every attempt is a new request");
    // each attempt carries the time still left
    let t: Vec<Duration> = seen.iter().map(|i| i.sealed().request.timeout).collect();
    assert!(t[0] > t[1] && t[1] > t[2], "{t:?}");
    assert_eq!(r.stderr.matches("trying again").count(), 2, "{r:?}");
}

#[test]
fn endless_retry_answers_end_at_the_timeout() {
    let host = FakeHost::start(|_, _| Answer::Retry(RetryReason::NoHost));
    let r = agent(
        &args(&host, &["-o", "off", "-n", "web2", "--timeout", "2.5"]),
        LIMIT,
    );
    assert_eq!(r.code, 1, "{r:?}");
    // attempts at 0, 1 and 2 s; 0.5 s left is too little for a pause and another attempt
    assert!(
        r.took >= Duration::from_millis(1900) && r.took < Duration::from_secs(4),
        "{r:?}"
    );
    assert!(r.stderr.contains("gave up after 3 attempt(s)"), "{r:?}");
    assert_eq!(r.stderr.matches("trying again").count(), 2, "{r:?}");
}

#[test]
fn a_silent_host_fails_within_the_timeout() {
    let host = FakeHost::start(|_, _| Answer::Silent);
    let r = agent(
        &args(&host, &["-o", "off", "-n", "web2", "--timeout", "2"]),
        LIMIT,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.took >= Duration::from_millis(1900) && r.took < Duration::from_secs(5),
        "{r:?}"
    );
    assert!(r.stderr.contains("no answer within"), "{r:?}");
    assert_eq!(host.seen().len(), 1, "a timeout is not retried");
}

#[test]
fn a_restarting_guest_daemon_is_waited_for() {
    let host = FakeHost::start_after(Duration::from_millis(1500), |_, _| {
        done(PowerState::Off, "web2 is off")
    });
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("cannot connect to vm-connectd"), "{r:?}");
    assert_eq!(host.seen().len(), 1);
}

#[test]
fn list_list_status_and_monitor() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        match r.action {
            Action::List => {
                let mut reply = FenceReply::new(Outcome::Done, PowerState::Unknown, "2 guests");
                reply.targets = vec![Name::new("web2").unwrap(), Name::new("web3").unwrap()];
                Answer::Reply(reply)
            }
            Action::Status if r.target.as_ref().unwrap().as_str() == "web2" => {
                done(PowerState::On, "on")
            }
            Action::Status => done(PowerState::Off, "off"),
            Action::Monitor => done(PowerState::Unknown, "path works"),
            other => panic!("unexpected {other}"),
        }
    });
    let r = agent(&args(&host, &["-o", "list"]), LIMIT);
    assert_eq!((r.code, r.stdout.as_str()), (0, "web2,\nweb3,\n"), "{r:?}");
    let r = agent(&args(&host, &["-o", "list-status"]), LIMIT);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "web2,,on\nweb3,,off\n"),
        "{r:?}"
    );
    let r = agent(&args(&host, &["-o", "monitor"]), LIMIT);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    let sealed: Vec<_> = host.seen().iter().map(|i| i.sealed().clone()).collect();
    assert_eq!(sealed.len(), 5);
    assert!(sealed[0].request.target.is_none() && sealed[4].request.action == Action::Monitor);
}

#[test]
fn options_on_stdin_as_the_fencer_passes_them() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        assert_eq!(r.action, Action::Off);
        assert_eq!(r.target.as_ref().unwrap().as_str(), "web2");
        assert_eq!(r.requester.as_str(), "web1");
        done(PowerState::Off, "web2 is off")
    });
    let input = format!(
        "# fencer input\naction=off\nport=web2\nnodename=node2\npcmk_host_list=node2\n\
         power_timeout=20\nfrobnicate=yes\nsocket={}\nkey_file={}\nrequester=web1\n\n",
        host.socket_str(),
        host.key_str()
    );
    let r = run(Command::new(common::AGENT), Some(&input), LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "Success: Powered OFF\n");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr
            .contains("warning: ignoring unknown option \"frobnicate\""),
        "{r:?}"
    );
    // stdin is not read when there are arguments
    let mut cmd = Command::new(common::AGENT);
    cmd.args(["-o", "metadata"]);
    let r = run(cmd, Some("action=off\n"), LIMIT);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("<?xml"));
}

#[test]
fn metadata_is_well_formed() {
    let r = agent(&strings(&["-o", "metadata"]), LIMIT);
    assert_eq!(r.code, 0);
    for want in [
        "<resource-agent name=\"fence_vmstonith\"",
        "<parameter name=\"port\" unique=\"0\" required=\"0\" deprecated=\"1\">",
        "<parameter name=\"plug\" unique=\"0\" required=\"0\" obsoletes=\"port\">",
        "<action name=\"monitor\" />",
    ] {
        assert!(r.stdout.contains(want), "{want} missing:\n{}", r.stdout);
    }
    match common::xmllint(&r.stdout) {
        Some(result) => result.unwrap(),
        None => eprintln!("note: xmllint is not installed; metadata not checked with it"),
    }
}

#[test]
fn validate_all_checks_the_key_file() {
    let host = FakeHost::start(|_, _| panic!("validate-all sends nothing"));
    let r = agent(&args(&host, &["-o", "validate-all"]), LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::set_permissions(&host.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = agent(&args(&host, &["-o", "validate-all"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("mode 0644"), "{r:?}");
    // and an action refuses to run with it
    let r = agent(&args(&host, &["-o", "off", "-n", "web2"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    // no key at all: what is missing, and where the key comes from
    std::fs::remove_file(&host.key_file).unwrap();
    let r = agent(&args(&host, &["-o", "validate-all"]), LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("No such file or directory")
            && r.stderr.contains("vm-ctl stonith keygen"),
        "{r:?}"
    );
    assert!(host.seen().is_empty());
}

#[test]
fn usage_errors_exit_1() {
    for bad in [
        &["-o", "explode"][..],
        &["--bogus"],
        &["-o", "off"],
        &["-n"],
    ] {
        let r = agent(&strings(bad), LIMIT);
        assert_eq!(r.code, 1, "{bad:?}: {r:?}");
        assert!(r.stdout.is_empty() && !r.stderr.is_empty(), "{r:?}");
    }
    let r = agent(&strings(&["--version"]), LIMIT);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("fence_vmstonith "));
}
