//! `stonith keygen | token | guest-config`: set up guest clusters that fence their guests
//! through the host cluster's vm-stonithd. Nothing here touches the CIB; `keygen` writes one new
//! key file, the others only print.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use vm_seal::legacy::{self, ORIGINAL_PASSWORD, Password};
use vm_seal::{Key, KeyId, Name};

use crate::App;
use crate::cli::{FencePaths, Md, Syntax};
use crate::error::{Error, Result};
use crate::ids;
use crate::output::{GuestConfigReport, KeygenReport, Outcome, TokenReport};
use crate::stonith::client_config;
use crate::stonith::guest_config::{self, Device, GuestConfig};
use crate::stonith::{self as fencing, KeygenFacts, StonithdToml};

/// Longest resource id whose token the original's hosts can still decrypt: `openssl enc
/// -base64` without `-A` reads one line of at most 64 characters.
const ORIGINAL_MAX_RSC_LEN: usize = 30;

/// vm-stonithd.toml, if it exists: (the parsed file, a problem to report instead).
pub fn read_stonithd_toml(path: &Path) -> (Option<StonithdToml>, Option<String>) {
    match fs::read_to_string(path) {
        // (the error names the file)
        Ok(text) => match StonithdToml::parse(&text, path) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("cannot read {}: {e}", path.display()))),
    }
}

/// This host's name, as Pacemaker may know it: the full host name and its first label.
pub fn host_names() -> Vec<String> {
    let Ok(name) = nix::unistd::gethostname() else {
        return Vec::new();
    };
    let full = name.to_string_lossy().into_owned();
    let mut names = vec![full.clone()];
    if let Some((short, _)) = full.split_once('.') {
        names.push(short.to_owned());
    }
    names
}

/// The `*.key` files of `dir`, sorted (empty if it cannot be listed).
pub fn key_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Older keys of `cluster` in `dir` (files that load; the others are `check`'s business).
fn older_keys(dir: &Path, cluster: &Name, new: KeyId) -> Vec<PathBuf> {
    key_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| Key::load(p).is_ok_and(|k| k.cluster() == cluster && k.id() != new))
        .collect()
}

/// Create the key directory (mode 0700) if it is missing; a warning when it is looser.
fn ensure_key_dir(dir: &Path) -> Result<Option<String>> {
    let err = |op, source| Error::KeyDir {
        op,
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.mode() & 0o7777;
            Ok((mode & 0o077 != 0).then(|| {
                format!(
                    "the key directory {} has mode {mode:04o}: make it 0700 (chmod 700 {})",
                    dir.display(),
                    dir.display()
                )
            }))
        }
        Ok(_) => Err(err(
            "use",
            std::io::Error::other("it exists and is not a directory"),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| err("create the parent of", e))?;
            }
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map(|()| None)
                .map_err(|e| err("create", e))
        }
        Err(e) => Err(err("read", e)),
    }
}

/// `stonith keygen CLUSTER [--members ...]`.
pub fn keygen(app: &App, cluster: &str, members: &[String], paths: &FencePaths) -> Result<Outcome> {
    let cluster = fencing::fence_name("guest cluster name", cluster)?;
    let members = if members.is_empty() {
        Vec::new()
    } else {
        fencing::parse_members(members)?
    };
    let (toml, problem) = read_stonithd_toml(&paths.stonithd_config);
    let mut warnings: Vec<String> = problem
        .map(|p| format!("{p} (its key_dir and clusters are not used)"))
        .into_iter()
        .collect();
    let dir = fencing::key_dir(paths.key_dir.as_deref(), toml.as_ref());
    let key_error = |source| Error::Key {
        cluster: cluster.to_string(),
        source,
    };
    let key = Key::generate(cluster.as_str()).map_err(key_error)?;
    let file = dir.join(fencing::key_file_name(&cluster, key.id()));
    let older = older_keys(&dir, &cluster, key.id());
    if !app.dry_run {
        warnings.extend(ensure_key_dir(&dir)?);
        key.write_new(&file).map_err(key_error)?;
        tracing::info!(cluster = %cluster, id = %key.id(), file = %file.display(), "wrote a new guest-cluster key");
    }
    let me = host_names();
    let other_nodes: Option<Vec<String>> = app.pcmk.snapshot().ok().map(|cib| {
        cib.node_names()
            .into_iter()
            .filter(|n| !me.iter().any(|m| m == n))
            .map(str::to_owned)
            .collect()
    });
    let fingerprint = key.fingerprint();
    let instructions = fencing::keygen_text(&KeygenFacts {
        cluster: &cluster,
        file: &file,
        id: key.id(),
        fingerprint: &fingerprint,
        written: !app.dry_run,
        other_nodes: other_nodes.as_deref(),
        older: &older,
        members: &members,
        toml_path: &paths.stonithd_config,
        in_toml: toml.as_ref().map(|t| t.clusters.contains_key(&cluster)),
    });
    Ok(Outcome {
        keygen: Some(KeygenReport {
            cluster: cluster.to_string(),
            file,
            id: key.id().to_string(),
            fingerprint,
            written: !app.dry_run,
            copy_to: other_nodes.unwrap_or_default(),
            instructions,
        }),
        warnings,
        ..Outcome::default()
    })
}

/// The legacy password: from `file`, or the original's public one (with a warning).
fn legacy_password(file: Option<&Path>, rsc: &str) -> Result<(Password, Option<String>)> {
    match file {
        Some(path) => Password::from_file(path)
            .map(|p| (p, None))
            .map_err(|source| Error::LegacyToken {
                rsc: rsc.to_owned(),
                source,
            }),
        None => {
            let warning = format!(
                "using the original pm_kvm_tools password \"{ORIGINAL_PASSWORD}\", which is \
                 public: anyone can decrypt or forge such tokens, so legacy mode gives no real \
                 protection (give --password-file, or better use fence_vmstonith with a key: \
                 vm-ctl stonith keygen)"
            );
            Ok((Password::from(ORIGINAL_PASSWORD), Some(warning)))
        }
    }
}

/// A legacy token for `rsc`.
fn make_token(rsc: &str, password: &Password, md: Md) -> Result<String> {
    legacy::check_resource_id(rsc).map_err(|source| Error::ResourceId {
        rsc: rsc.to_owned(),
        source,
    })?;
    legacy::encrypt_token(rsc, password, md.into()).map_err(|source| Error::LegacyToken {
        rsc: rsc.to_owned(),
        source,
    })
}

/// A warning when the original vm-stonithd cannot decrypt `rsc`'s token.
fn long_warning(rsc: &str) -> Option<String> {
    (rsc.len() > ORIGINAL_MAX_RSC_LEN).then(|| {
        format!(
            "{rsc} is longer than {ORIGINAL_MAX_RSC_LEN} characters: the original pm_kvm_tools \
             vm-stonithd (openssl without -A) cannot decrypt its token; pm-kvm-tools' vm-stonithd can"
        )
    })
}

/// `stonith token DOMAIN [--resource RSC] [--password-file FILE] [--md md5|sha256]`.
pub fn token(
    domain: &str,
    resource: Option<&str>,
    password_file: Option<&Path>,
    md: Md,
) -> Result<Outcome> {
    let dom = fencing::fence_name("domain name", domain)?;
    if dom.as_str().contains(':') {
        return Err(Error::StonithOption {
            option: "DOMAIN",
            problem: format!(
                "{dom} contains ':', which separates the name and the token in a hostlist"
            ),
        });
    }
    let rsc = resource.map_or_else(|| ids::rsc(dom.as_str()), str::to_owned);
    legacy::check_resource_id(&rsc).map_err(|source| Error::ResourceId {
        rsc: rsc.clone(),
        source,
    })?;
    let (password, warning) = legacy_password(password_file, &rsc)?;
    let token = make_token(&rsc, &password, md)?;
    let warnings = warning.into_iter().chain(long_warning(&rsc)).collect();
    let digest: legacy::Digest = md.into();
    Ok(Outcome {
        token: Some(TokenReport {
            domain: dom.to_string(),
            resource: rsc,
            digest: digest.openssl_name().to_owned(),
            entry: guest_config::token_entry(dom.as_str(), &token),
            token,
        }),
        warnings,
        ..Outcome::default()
    })
}

/// `stonith guest-config` options besides the cluster and its members.
#[derive(Debug, Clone, Copy)]
pub struct GuestConfigOpts<'a> {
    /// The key file in the guests.
    pub key_file: &'a str,
    /// fence_vmstonith's timeout, seconds.
    pub timeout: u64,
    /// Legacy tokens instead of fence_vmstonith.
    pub legacy: bool,
    /// The legacy password file.
    pub password_file: Option<&'a Path>,
    /// The legacy digest.
    pub md: Md,
    /// Which syntax to print.
    pub syntax: Syntax,
}

/// `stonith guest-config CLUSTER --members ...`.
pub fn guest_config(
    cluster: &str,
    members: &[String],
    opts: GuestConfigOpts<'_>,
) -> Result<Outcome> {
    let cluster = fencing::fence_name("guest cluster name", cluster)?;
    let members = fencing::parse_members(members)?;
    fencing::check_mappable(&members)?;
    let mut warnings = Vec::new();
    let device = if opts.legacy {
        let rscs: Vec<String> = members
            .iter()
            .map(|m| ids::rsc(m.domain.as_str()))
            .collect();
        for rsc in &rscs {
            legacy::check_resource_id(rsc).map_err(|source| Error::ResourceId {
                rsc: rsc.clone(),
                source,
            })?;
        }
        let first = rscs.first().map_or("", String::as_str);
        let (password, warning) = legacy_password(opts.password_file, first)?;
        warnings.extend(warning);
        let mut tokens = Vec::with_capacity(rscs.len());
        for rsc in &rscs {
            tokens.push(make_token(rsc, &password, opts.md)?);
            warnings.extend(long_warning(rsc));
        }
        Device::Legacy { tokens }
    } else {
        guest_config::check_key_file(opts.key_file)?;
        Device::Sealed {
            key_file: opts.key_file.to_owned(),
        }
    };
    let config = GuestConfig {
        cluster,
        members,
        timeout: opts.timeout,
        device,
    };
    Ok(Outcome {
        warnings,
        ..sections(
            opts.syntax,
            || config.crm(),
            || config.pcs(),
            || config.cibadmin(),
        )
    })
}

/// The sections `syntax` asks for, each rendered only if asked for.
fn sections(
    syntax: Syntax,
    crm: impl FnOnce() -> String,
    pcs: impl FnOnce() -> String,
    cibadmin: impl FnOnce() -> String,
) -> Outcome {
    let want = |s: Syntax| syntax == Syntax::All || syntax == s;
    Outcome {
        guest_config: Some(GuestConfigReport {
            crm: want(Syntax::Crm).then(crm),
            pcs: want(Syntax::Pcs).then(pcs),
            cibadmin: want(Syntax::Cibadmin).then(cibadmin),
        }),
        ..Outcome::default()
    }
}

/// `stonith client-config`: the vm-client clone and an example rule for the guest cluster.
pub fn client_config(
    attributes: &str,
    resource: &str,
    bad_value: &str,
    syntax: Syntax,
) -> Result<Outcome> {
    let names: Vec<String> = attributes.split_whitespace().map(str::to_owned).collect();
    if names.is_empty() || names.len() > 32 {
        return Err(Error::StonithOption {
            option: "--attributes",
            problem: format!("{} names: give 1 to 32", names.len()),
        });
    }
    for n in &names {
        client_config::check_attribute(n)?;
    }
    ids::check_name("resource", resource)?;
    let value_ok = (1..=128).contains(&bad_value.len())
        && bad_value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'));
    if !value_ok {
        return Err(Error::StonithOption {
            option: "--bad-value",
            problem: format!("{bad_value:?}: 1-128 of A-Z a-z 0-9 _ . : -"),
        });
    }
    let config = client_config::ClientConfig {
        attributes: names,
        resource: resource.to_owned(),
        bad_value: bad_value.to_owned(),
    };
    Ok(sections(
        syntax,
        || config.crm(),
        || config.pcs(),
        || config.cibadmin(),
    ))
}
