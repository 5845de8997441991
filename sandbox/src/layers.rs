//! Each layer of the sandbox as one function returning what went wrong in
//! words. All run in the single-threaded helper or its init.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::helper::{owned, raw};
use crate::{Limits, Policy};

/// A layer, named as an error names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layer {
    Namespaces,
    Mounts,
    Loopback,
    Limits,
    NoNewPrivs,
    Capabilities,
    Landlock,
    Seccomp,
}

impl Layer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layer::Namespaces => "namespaces (user, PID, mount, IPC, network)",
            Layer::Mounts => "the sandbox's mounts (/proc, /tmp, read-only .git)",
            Layer::Loopback => "loopback in the network namespace",
            Layer::Limits => "process limits",
            Layer::NoNewPrivs => "PR_SET_NO_NEW_PRIVS",
            Layer::Capabilities => "dropping capabilities",
            Layer::Landlock => "Landlock",
            Layer::Seccomp => "seccomp",
        }
    }
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))
}

/// A close-on-exec pipe: (read, write).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_error("pipe2"));
    }
    Ok((owned(fds[0]), owned(fds[1])))
}

/// Moves stdin (troupe's pipe) to a close-on-exec descriptor and puts
/// /dev/null in its place.
pub(crate) fn take_stdin_as_lifeline() -> Result<OwnedFd, String> {
    // SAFETY: plain descriptor calls on descriptors this process owns.
    unsafe {
        let lifeline = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        if lifeline < 0 {
            return Err(os_error("keeping the lifeline"));
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 {
            return Err(os_error("opening /dev/null as stdin"));
        }
        libc::close(null);
        Ok(owned(lifeline))
    }
}

/// Takes the inherited descriptor `fd` as the lifeline, close-on-exec so
/// the command does not get it.
pub(crate) fn take_fd_as_lifeline(fd: libc::c_int) -> Result<OwnedFd, String> {
    // SAFETY: fcntl on a descriptor number; a closed one gives EBADF.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(os_error(&format!("the lifeline on descriptor {fd}")));
    }
    Ok(owned(fd))
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))
}

/// New user, mount, PID, IPC (and network unless `network`) namespaces,
/// the caller's uid and gid mapped to themselves.
pub(crate) fn enter_namespaces(network: bool) -> Result<(), String> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
    if !network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(os_error("unshare"));
    }
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1"))?;
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1"))?;
    Ok(())
}

/// The parent's death kills this process (the helper is single-threaded,
/// so "parent" is the helper itself, not one of its threads).
pub(crate) fn die_with_parent() {
    // SAFETY: prctl with integer arguments; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() == 1 && libc::getpid() != 1 {
            // The helper died before the prctl took effect.
            libc::_exit(libc::SIGKILL + 128);
        }
    }
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let source = source.map(c_path).transpose()?;
    let target_c = c_path(target)?;
    let fstype = fstype.map(|t| CString::new(t).unwrap_or_default());
    let data = data.map(|d| CString::new(d).unwrap_or_default());
    // SAFETY: every pointer is a NUL-terminated string alive for the call,
    // or null.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(os_error(&format!("mount on {}", target.display())));
    }
    Ok(())
}

/// The flags a bind remount must keep (a user namespace may not clear the
/// ones the original mount has).
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = c_path(path) else { return 0 };
    // SAFETY: statvfs writes into the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

fn bind_read_only(path: &Path, source: &Path) -> Result<(), String> {
    mount(Some(source), path, None, libc::MS_BIND | libc::MS_REC, None)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(path);
    mount(None, path, None, flags, None)
}

/// A fresh tmpfs on `/tmp`. Policy paths that lie under the host's `/tmp`
/// (a workspace in a temporary data dir) are carried into it: bound to a
/// staging directory in the already private `shm`, then bound back at the
/// same path inside the new `/tmp`, read-only unless it is (or lies in) a
/// write path: Landlock would otherwise let the private `/tmp`'s write
/// access reach through the bind mount. Without `shm` to stage in, `/tmp`
/// stays the host's when a policy path lies there.
fn private_tmp(policy: &Policy, shm: &Path) -> Result<(), String> {
    let tmp = Path::new("/tmp");
    let keep: Vec<&PathBuf> = policy
        .read
        .iter()
        .chain(&policy.write)
        .filter(|p| under(p, tmp) && p.exists())
        .collect();
    if !keep.is_empty() && !shm.is_dir() {
        return Ok(());
    }
    let staged: Vec<PathBuf> = (0..keep.len())
        .map(|i| shm.join(format!(".troupe-keep-{i}")))
        .collect();
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    for (path, stage) in keep.iter().zip(&staged) {
        if path.is_dir() {
            std::fs::create_dir(stage).map_err(|e| io("creating", stage, e))?;
        } else {
            std::fs::write(stage, b"").map_err(|e| io("creating", stage, e))?;
        }
        mount(Some(path), stage, None, libc::MS_BIND | libc::MS_REC, None)?;
    }
    mount(
        Some(Path::new("tmpfs")),
        tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777,size=1g"),
    )?;
    for (path, stage) in keep.iter().zip(&staged) {
        if stage.is_dir() {
            std::fs::create_dir_all(path).map_err(|e| io("creating", path, e))?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
            }
            std::fs::write(path, b"").map_err(|e| io("creating", path, e))?;
        }
        mount(Some(stage), path, None, libc::MS_BIND | libc::MS_REC, None)?;
        if !policy.write.iter().any(|w| under(path, w)) {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(path);
            mount(None, path, None, flags, None)?;
        }
        let stage_c = c_path(stage)?;
        // SAFETY: umount2 with a NUL-terminated path; the stage is ours.
        unsafe { libc::umount2(stage_c.as_ptr(), libc::MNT_DETACH) };
        let _ = if stage.is_dir() {
            std::fs::remove_dir(stage)
        } else {
            std::fs::remove_file(stage)
        };
    }
    Ok(())
}

/// Whether `inner` is `outer` or below it.
fn under(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Files under `/etc` that other users may not read: hidden behind an empty
/// file, since a process of the same uid as a root troupe would own them.
fn private_etc_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if meta.is_dir() && !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            if meta.permissions().mode() & 0o005 == 0 {
                out.push(path);
            } else if depth > 0 {
                private_etc_files(&path, depth - 1, out);
            }
        } else if meta.is_file() && meta.permissions().mode() & 0o004 == 0 {
            out.push(path);
        }
    }
}

/// The mount namespace: nothing propagates to the host, a fresh `/proc`
/// for the PID namespace, a private `/dev/shm` and `/tmp` (keeping the
/// policy's paths that lie under `/tmp`), the read-only paths, and, when troupe runs as
/// root, `/etc`'s private files hidden.
pub(crate) fn mounts(policy: &Policy) -> Result<(), String> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        mount(
            Some(Path::new("tmpfs")),
            shm,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("mode=1777,size=256m"),
        )?;
    }
    private_tmp(policy, shm)?;
    for path in &policy.read_only {
        if path.exists() {
            bind_read_only(path, path)?;
        }
    }
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        let mut hidden = Vec::new();
        private_etc_files(Path::new("/etc"), 3, &mut hidden);
        for path in hidden {
            // A directory is covered by an empty, unreadable tmpfs; a file
            // by /dev/null.
            if path.is_dir() {
                mount(
                    Some(Path::new("tmpfs")),
                    &path,
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY,
                    Some("mode=000,size=4k"),
                )?;
            } else {
                bind_read_only(&path, Path::new("/dev/null"))?;
            }
        }
    }
    Ok(())
}

/// Brings `lo` up in the new network namespace (a test server on loopback
/// must work; nothing else exists there).
pub(crate) fn loopback_up() -> Result<(), String> {
    // SAFETY: a datagram socket for the interface ioctls, closed below; the
    // ifreq is zeroed and its name set within bounds.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(os_error("socket"));
        }
        let sock = owned(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(raw(&sock), libc::SIOCGIFFLAGS as _, &mut req) != 0 {
            return Err(os_error("SIOCGIFFLAGS lo"));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(raw(&sock), libc::SIOCSIFFLAGS as _, &req) != 0 {
            return Err(os_error("SIOCSIFFLAGS lo"));
        }
    }
    Ok(())
}

fn set_limit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
    name: &str,
) -> Result<(), String> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(os_error(name));
    }
    Ok(())
}

/// rlimits for every process of the command: CPU seconds, address space,
/// open files, a process count, no core files.
pub(crate) fn limits(limits: &Limits) -> Result<(), String> {
    set_limit(
        libc::RLIMIT_CPU,
        limits.cpu_seconds,
        limits.cpu_seconds.saturating_add(1),
        "RLIMIT_CPU",
    )?;
    let bytes = limits.memory_mb.saturating_mul(1024 * 1024);
    set_limit(libc::RLIMIT_AS, bytes, bytes, "RLIMIT_AS")?;
    set_limit(
        libc::RLIMIT_NOFILE,
        limits.open_files,
        limits.open_files,
        "RLIMIT_NOFILE",
    )?;
    set_limit(
        libc::RLIMIT_NPROC,
        limits.processes,
        limits.processes,
        "RLIMIT_NPROC",
    )?;
    set_limit(libc::RLIMIT_CORE, 0, 0, "RLIMIT_CORE")
}

pub(crate) fn no_new_privs() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os_error("prctl"));
    }
    Ok(())
}

/// Every capability of the user namespace dropped for good: uid 0 (a root
/// troupe maps root to itself) gets none back at exec.
pub(crate) fn drop_capabilities() -> Result<(), String> {
    const SECBITS: libc::c_ulong = (libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED) as libc::c_ulong;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl with integer arguments; capset reads the header and two
    // data structs (version 3).
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, SECBITS, 0, 0, 0) != 0 {
            return Err(os_error("PR_SET_SECUREBITS"));
        }
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                break;
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(os_error("capset"));
        }
    }
    Ok(())
}

/// Landlock: the returned ABI version is what the kernel enforced.
pub(crate) fn landlock(policy: &Policy) -> Result<i32, String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| e.to_string();
    let mut read: Vec<PathBuf> = crate::system_read_paths();
    read.extend(policy.read.iter().cloned());
    read.push(PathBuf::from("/proc"));
    read.push(PathBuf::from("/dev/random"));
    read.push(PathBuf::from("/dev/urandom"));
    let mut write: Vec<PathBuf> = policy.write.clone();
    write.extend(["/dev/null", "/dev/zero", "/dev/full", "/dev/shm"].map(PathBuf::from));
    let tmp = Path::new("/tmp");
    let host_tmp_kept = policy
        .read
        .iter()
        .chain(&policy.write)
        .any(|p| under(p, tmp))
        && !Path::new("/dev/shm").is_dir();
    if !host_tmp_kept {
        // The private tmpfs mounted over it (see `private_tmp`).
        write.push(tmp.to_path_buf());
    }
    let exists = |p: &PathBuf| p.exists();
    let read: Vec<PathBuf> = read.into_iter().filter(exists).collect();
    let write: Vec<PathBuf> = write.into_iter().filter(exists).collect();
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?;
    let limit_connect = policy.network && !policy.connect_ports.is_empty();
    if limit_connect {
        ruleset = ruleset.handle_access(AccessNet::ConnectTcp).map_err(err)?;
    }
    let mut created = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(&read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(&write, AccessFs::from_all(abi)))
        .map_err(err)?;
    if limit_connect {
        for &port in &policy.connect_ports {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(err)?;
        }
    }
    let status = created.restrict_self().map_err(err)?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("the kernel does not enforce Landlock".into()),
        _ => Ok(landlock_version()),
    }
}

fn landlock_version() -> i32 {
    // SAFETY: landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION
    // and no attributes only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// The seccomp filters: the refused calls fail with EPERM, `clone3` with
/// ENOSYS, `clone` with a new-namespace flag with EPERM.
pub(crate) fn seccomp() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let refused: &[libc::c_long] = &[
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_chroot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        refused.iter().map(|&nr| (nr, Vec::new())).collect();
    let namespace_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
        0x80, // CLONE_NEWTIME
    ];
    let mut clone_rules = Vec::new();
    for flag in namespace_flags {
        let flag = flag as u64;
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| e.to_string())?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(|e| e.to_string())?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    for filter in [eperm, enosys] {
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        seccompiler::apply_filter(&program).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits for `child` while watching the lifeline: when troupe's end of it
/// closes, the child is killed. Returns the child's raw wait status.
pub(crate) fn wait_with_lifeline(child: libc::pid_t, lifeline: &OwnedFd) -> i32 {
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) };
    let pidfd = libc::c_int::try_from(pidfd).unwrap_or(-1);
    loop {
        let mut fds = [
            libc::pollfd {
                fd: raw(lifeline),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without a pidfd (an old kernel) the child's end is polled for.
        let (count, timeout) = if pidfd >= 0 { (2, -1) } else { (1, 20) };
        // SAFETY: poll reads and writes the array of `count` entries.
        unsafe { libc::poll(fds.as_mut_ptr(), count, timeout) };
        if fds[0].revents != 0 {
            // troupe is gone (or wrote to the lifeline, which it never
            // does): the command must not outlive it.
            // SAFETY: kill with a pid this process forked.
            unsafe { libc::kill(child, libc::SIGKILL) };
            return wait_for(child);
        }
        let mut status = 0;
        // SAFETY: waitpid writes the status.
        let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if done == child {
            return status;
        }
    }
}

fn wait_for(child: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child
            || (rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return status;
        }
    }
}

/// What the init watches besides the command's end.
pub(crate) struct Caps {
    /// Processes at once.
    pub(crate) processes: u64,
    /// Anonymous resident bytes of them all, if capped.
    pub(crate) memory_bytes: Option<u64>,
}

/// As PID 1: reaps every child until `command` ends; its raw wait status.
///
/// With caps it also looks at the namespace's processes every 10 ms and
/// kills them all when there are more than `caps.processes` (RLIMIT_NPROC
/// holds the count for any other user, but the kernel never applies it to
/// processes whose real user is the host's root, which a sandbox started by
/// root maps to) or when their anonymous resident memory together passes
/// `caps.memory_bytes` (a cgroup's job, done here because cgroups are
/// rarely delegated). A fork bomb or a memory hog is stopped within one
/// period.
pub(crate) fn reap_until(command: libc::pid_t, caps: Option<Caps>) -> i32 {
    let Some(caps) = caps else {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid == command {
                return status;
            }
            if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return status;
            }
        }
    };
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, command, 0) };
    let pidfd = libc::c_int::try_from(pidfd).unwrap_or(-1);
    // SAFETY: sysconf with a valid name.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut warned = false;
    // Memory is looked at every 10th period (its figures cost more to
    // read), and must be over the cap twice in a row: a vfork child shows
    // its parent's memory as its own until it execs.
    let mut tick: u64 = 0;
    let mut over_before = false;
    loop {
        tick += 1;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == command {
                return status;
            }
            if pid <= 0 {
                if pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                    return status;
                }
                break;
            }
        }
        let pids = namespace_pids();
        // Everything but this init counts.
        let count = pids.iter().filter(|&&p| p != 1).count() as u64;
        let over = if count > caps.processes {
            Some(format!(
                "the command had more than {} processes at once",
                caps.processes
            ))
        } else {
            caps.memory_bytes
                .filter(|_| tick.is_multiple_of(10))
                .and_then(|cap| {
                    let used: u64 = pids
                        .iter()
                        .filter(|&&p| p != 1)
                        .map(|&p| private_memory_bytes(p, page))
                        .sum();
                    let twice = over_before && used > cap;
                    over_before = used > cap;
                    twice.then(|| {
                        format!(
                            "the command's processes used more than {} MiB of memory together",
                            cap >> 20
                        )
                    })
                })
        };
        if let Some(why) = over {
            if !warned {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("troupe sandbox: {why}; every process of the call was killed\n")
                        .as_bytes(),
                );
                warned = true;
            }
            // SAFETY: kill(-1) from a PID namespace's init signals every
            // process of that namespace but the init itself.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        }
        let mut fds = [libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let count = if pidfd >= 0 { 1 } else { 0 };
        // SAFETY: poll reads and writes `count` entries of the array.
        unsafe { libc::poll(fds.as_mut_ptr(), count, 10) };
    }
}

/// The processes visible in this namespace's /proc.
fn namespace_pids() -> Vec<u32> {
    std::fs::read_dir("/proc").map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        },
    )
}

/// The memory `pid` holds, in bytes: its proportional share (PSS) of
/// anonymous and shared-memory pages (`smaps_rollup`), so that pages a
/// fork shares copy-on-write count once in all, and `MAP_SHARED` or SysV
/// shared memory counts too. Where the kernel has no `smaps_rollup`, the
/// resident pages that are not file-backed (`statm`).
fn private_memory_bytes(pid: u32, page: u64) -> u64 {
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let kib = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_ascii_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(anon) = kib("Pss_Anon:") {
            return (anon + kib("Pss_Shmem:").unwrap_or(0)).saturating_mul(1024);
        }
    }
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let mut fields = statm.split_ascii_whitespace().skip(1);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (resident, shared) = (next(), next());
    resident.saturating_sub(shared).saturating_mul(page)
}

/// Ends this process the way a raw wait status says the command ended: the
/// same exit code, or the same signal.
pub(crate) fn exit_like(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: restoring the default action and raising the signal; no
        // core file is written (RLIMIT_CORE 0).
        unsafe {
            let lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        std::process::exit(128 + signal)
    }
    std::process::exit(libc::WEXITSTATUS(status))
}
