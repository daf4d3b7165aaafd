//! Free space of the data directory's filesystem, when dbwarden runs on the database host.
//! `statvfs` needs only search permission on the parent directories, so the `dbwarden`
//! user can measure `/var/lib/postgresql/NN/main` without reading it (mode 0700).

use std::path::Path;

/// Used and total bytes of a filesystem, as `df` shows them (blocks reserved for root
/// count as used: they are not available to PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub total: f64,
    pub available: f64,
    /// Filesystem id, to tell whether pg_wal lives on another filesystem.
    pub fsid: u64,
}

impl Usage {
    /// Share of the filesystem not available to unprivileged writers, 0–100.
    pub fn used_percent(&self) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        ((self.total - self.available) * 100.0 / self.total).clamp(0.0, 100.0)
    }
}

/// `statvfs(path)`; `None` when the path is not visible from this host or process.
pub fn usage(path: &Path) -> Option<Usage> {
    let st = rustix::fs::statvfs(path).ok()?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    } as f64;
    Some(Usage {
        total: st.f_blocks as f64 * frsize,
        available: st.f_bavail as f64 * frsize,
        fsid: st.f_fsid,
    })
}

/// Whether a connection endpoint is this host: a Unix socket or a loopback address.
/// A remote server's data directory path may exist here too (another cluster); measuring it
/// would report the wrong disk, so only local connections are measured.
pub fn is_local_endpoint(host: &str, socket: bool) -> bool {
    if socket || host.starts_with('/') {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints() {
        assert!(is_local_endpoint("localhost", false));
        assert!(is_local_endpoint("127.0.0.1", false));
        assert!(is_local_endpoint("127.1.2.3", false));
        assert!(is_local_endpoint("::1", false));
        assert!(is_local_endpoint("[::1]", false));
        assert!(is_local_endpoint("/var/run/postgresql", false));
        assert!(is_local_endpoint("db.example.com", true));
        assert!(!is_local_endpoint("db.example.com", false));
        assert!(!is_local_endpoint("10.0.0.5", false));
    }

    #[test]
    fn usage_of_the_temp_dir_is_sane() {
        let Some(u) = usage(&std::env::temp_dir()) else {
            panic!("statvfs of the temp dir failed");
        };
        assert!(u.total > 0.0);
        assert!(u.available <= u.total);
        let p = u.used_percent();
        assert!((0.0..=100.0).contains(&p));
        assert!(usage(Path::new("/nonexistent/dbwarden/path")).is_none());
    }

    #[test]
    fn percent_counts_reserved_blocks_as_used() {
        let u = Usage {
            total: 100.0,
            available: 20.0,
            fsid: 0,
        };
        assert_eq!(u.used_percent(), 80.0);
    }
}
