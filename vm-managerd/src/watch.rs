//! Being told when the CIB changes (docs/protocol.md §14.4).
//!
//! `crm_mon` in its update loop redraws its text output on every CIB change it is notified
//! of. vm-managerd runs one with that output going into a FIFO it owns; a reader thread turns
//! each burst of bytes into a bump of a [`Trigger`] (the child's care, the FIFO and the counter
//! are vm-common's [`supervise`](vm_common::supervise), shared with vm-stonithd), on which the refresher waits. Nothing
//! crm_mon prints is parsed: the bytes only say "something changed, read again".
//! (`crm_mon --external-agent`, which vm-stonithd uses, runs for resource operations only; a
//! node attribute change is not one.)

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::thread;

pub use vm_common::supervise::Trigger;
use vm_common::supervise::{Program, Supervisor, own_fifo};

/// The running crm_mon watcher.
#[derive(Debug)]
pub struct CibWatch {
    crm_mon: Supervisor,
}

impl CibWatch {
    /// Makes the FIFO `fifo` (mode 0600, replacing a stale one), starts the reader and a
    /// supervisor that keeps one crm_mon writing into it; each burst of output bumps `trigger`.
    pub fn start(fifo: PathBuf, trigger: Trigger) -> std::io::Result<CibWatch> {
        let mut reader = own_fifo(&fifo)?;
        let t = trigger.clone();
        thread::Builder::new()
            .name("cib-events".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    t.bump();
                }
            })?;
        // a new crm_mon may have missed changes
        let crm_mon = Supervisor::start("crm-mon", crm_mon(&fifo), move || trigger.bump())?;
        Ok(CibWatch { crm_mon })
    }

    /// Stops crm_mon.
    pub fn stop(&self) {
        self.crm_mon.stop();
    }
}

/// crm_mon redrawing its text output into `fifo`.
fn crm_mon(fifo: &std::path::Path) -> Program {
    let mut output = OsString::from("--output-to=");
    output.push(fifo);
    // Text output keeps crm_mon in its update loop, redrawing on CIB notifications. crm_mon
    // redraws at once only when its last redraw is more than `--interval` old, counted in
    // whole seconds, and otherwise 2 s later: with a long interval every change after the
    // first waited those 2 s (measured: p50 2.03 s). Below one second, the test is "the last
    // redraw was in an earlier second of the clock", so a change is seen at once unless another
    // redraw happened within the same second.
    Program {
        program: "crm_mon".into(),
        args: vec!["--output-as=text".into(), output, "--interval=500ms".into()],
        what: "crm_mon CIB watcher",
        meanwhile: "changes are still read every refresh period",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crm_mon_redraws_text_into_the_fifo_twice_a_second() {
        let p = crm_mon(std::path::Path::new("/run/x/cib-events"));
        assert_eq!(p.program, "crm_mon");
        assert_eq!(
            p.args,
            [
                "--output-as=text",
                "--output-to=/run/x/cib-events",
                "--interval=500ms"
            ]
        );
    }
}
