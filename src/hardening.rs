//! Process hardening at start-up: no core dumps, no ptrace by peers, and key
//! memory kept out of swap where the operator allows it.
//!
//! A core dump or a swapped-out page would put CMK material, DEKs and
//! plaintext fields on a disk nobody thought to protect. [`harden_process`]
//! closes both doors as far as the process's limits allow and says, as
//! warnings, what it could not do; it never fails the start.
//!
//! Memory is locked (`mlockall(MCL_CURRENT | MCL_FUTURE)`) only when the
//! process may lock without bound: `RLIMIT_MEMLOCK` is unlimited or it holds
//! `CAP_IPC_LOCK`. Under a finite limit `MCL_FUTURE` would make every later
//! allocation past the limit fail, turning a hardening step into an
//! out-of-memory crash under load; so then it only warns.

/// Refuses core dumps and tries to lock memory; returns a warning for each
/// step that could not be done (empty when fully hardened).
pub fn harden_process() -> Vec<String> {
    imp::harden()
}

#[cfg(target_os = "linux")]
mod imp {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{
        getrlimit, set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit,
    };
    use rustix::thread::{capabilities, CapabilitySet};

    pub(super) fn harden() -> Vec<String> {
        let mut warnings = Vec::new();
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            warnings.push(format!(
                "could not mark the process non-dumpable (PR_SET_DUMPABLE): {e}"
            ));
        }
        let no_core = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, no_core) {
            warnings.push(format!("could not set RLIMIT_CORE to 0: {e}"));
        }
        if let Some(w) = lock_memory() {
            warnings.push(w);
        }
        warnings
    }

    fn may_lock_unbounded() -> Result<(), String> {
        let limit = getrlimit(Resource::Memlock);
        if limit.current.is_none() {
            return Ok(());
        }
        let has_cap = capabilities(None)
            .map(|c| c.effective.contains(CapabilitySet::IPC_LOCK))
            .unwrap_or(false);
        if has_cap {
            return Ok(());
        }
        Err(format!(
            "memory not locked: RLIMIT_MEMLOCK is {} bytes and the process lacks CAP_IPC_LOCK; \
             key material may be swapped out (raise the limit, e.g. LimitMEMLOCK=infinity, \
             or use encrypted swap)",
            limit.current.unwrap_or(0)
        ))
    }

    fn lock_memory() -> Option<String> {
        if let Err(w) = may_lock_unbounded() {
            return Some(w);
        }
        match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE) {
            Ok(()) => None,
            Err(e) => Some(format!(
                "memory not locked: mlockall failed ({e}); key material may be swapped out"
            )),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn harden() -> Vec<String> {
        vec![
            "process hardening (no core dumps, locked memory) is implemented for Linux only"
                .to_string(),
        ]
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;

    /// The field of `/proc/self/status` named `name`.
    fn status_field(name: &str) -> String {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    }

    /// Runs in a child process (see below) so the hardening does not change
    /// the test process every other unit test runs in.
    #[test]
    #[ignore = "run as a child of hardened_process_is_not_dumpable_and_has_no_core_limit"]
    fn hardened_child() {
        let warnings = harden_process();
        let dumpable = rustix::process::dumpable_behavior().unwrap();
        let core = rustix::process::getrlimit(rustix::process::Resource::Core);
        println!(
            "\nCHILD dumpable={:?} core={:?}/{:?} locked_kb={} warnings={}",
            dumpable,
            core.current,
            core.maximum,
            status_field("VmLck:").trim_end_matches(" kB"),
            warnings.len()
        );
        for w in warnings {
            println!("CHILD warning: {w}");
        }
    }

    #[test]
    fn hardened_process_is_not_dumpable_and_has_no_core_limit() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "hardening::tests::hardened_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.find("CHILD dumpable=").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
        assert!(line.contains("dumpable=NotDumpable"), "{line}");
        assert!(line.contains("core=Some(0)/Some(0)"), "{line}");
        let locked_kb: u64 = line
            .split("locked_kb=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let warned = stdout.contains("CHILD warning: memory not locked");
        assert!(
            locked_kb > 0 || warned,
            "memory neither locked nor reported as not locked: {stdout}"
        );
    }
}
