//! The hosts a provider's output file may be downloaded from. A provider answers with a URL, and the worker
//! fetches it from inside the stage's network: without a list, a prediction's output (a model's, or whoever
//! controls the provider account's answers) could point the worker at any host, internal ones included (SSRF).

use url::Url;

/// Replicate serves prediction outputs from `replicate.delivery` and its subdomains (its documented file host).
pub const REPLICATE_OUTPUT_HOSTS: &str = "replicate.delivery";

/// Allowed download origins: a domain (`replicate.delivery`: https on the default port, the domain or any
/// subdomain), or an exact `http://host:port` origin (a local stand-in; never on a deployed stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadHosts {
    domains: Vec<String>,
    origins: Vec<(String, u16)>,
}

impl DownloadHosts {
    /// A comma-separated list of entries as above.
    pub fn parse(list: &str) -> Result<Self, String> {
        let (mut domains, mut origins) = (Vec::new(), Vec::new());
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(rest) = entry.strip_prefix("http://") {
                let url = Url::parse(&format!("http://{rest}")).map_err(|e| format!("{entry}: {e}"))?;
                let host = url.host_str().ok_or_else(|| format!("{entry}: no host"))?;
                let port = url.port_or_known_default().ok_or_else(|| format!("{entry}: no port"))?;
                origins.push((host.to_ascii_lowercase(), port));
            } else if entry.contains(['/', ':', '@'])
                || !entry.contains('.')
                || entry.parse::<std::net::IpAddr>().is_ok()
            {
                return Err(format!("{entry}: a domain (such as replicate.delivery) or an http://host:port origin"));
            } else {
                domains.push(entry.trim_start_matches('.').to_ascii_lowercase());
            }
        }
        if domains.is_empty() && origins.is_empty() {
            return Err("no hosts".to_owned());
        }
        Ok(Self { domains, origins })
    }

    /// Whether `url` may be fetched: https to an allowed domain (default port, no credentials in the URL), or
    /// an allowed http origin.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else { return false };
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        match url.scheme() {
            "https" => {
                url.port().is_none()
                    && self
                        .domains
                        .iter()
                        .any(|d| host == *d || host.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.')))
            }
            "http" => url.port_or_known_default().is_some_and(|port| self.origins.contains(&(host, port))),
            _ => false,
        }
    }
}

impl Default for DownloadHosts {
    fn default() -> Self {
        Self { domains: vec![REPLICATE_OUTPUT_HOSTS.to_owned()], origins: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(hosts: &DownloadHosts, url: &str) -> bool {
        hosts.allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn replicates_file_host_and_nothing_else() {
        let hosts = DownloadHosts::default();
        for ok in ["https://replicate.delivery/pbxt/abc/out-0.png", "https://pbxt.replicate.delivery/x/out.webp"] {
            assert!(allows(&hosts, ok), "{ok}");
        }
        for refused in [
            "http://replicate.delivery/pbxt/abc/out-0.png",
            "https://replicate.delivery:8443/out.png",
            "https://evilreplicate.delivery/out.png",
            "https://replicate.delivery.evil.example/out.png",
            "https://user:pw@replicate.delivery/out.png",
            "https://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9000/out.png",
            "file:///etc/passwd",
            "https://api.replicate.com/v1/files/x",
        ] {
            assert!(!allows(&hosts, refused), "{refused}");
        }
    }

    #[test]
    fn a_stand_in_origin_is_exact() {
        let hosts = DownloadHosts::parse("replicate.delivery, http://127.0.0.1:4010").unwrap();
        assert!(allows(&hosts, "http://127.0.0.1:4010/files/out.png"));
        assert!(!allows(&hosts, "http://127.0.0.1:4011/files/out.png"));
        assert!(!allows(&hosts, "https://127.0.0.1:4010/files/out.png"));
        assert!(allows(&hosts, "https://replicate.delivery/x.png"));
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in
            ["", " , ", "https://replicate.delivery", "localhost", "replicate.delivery/path", "http://", "10.0.0.7"]
        {
            assert!(DownloadHosts::parse(bad).is_err(), "{bad:?}");
        }
    }
}
