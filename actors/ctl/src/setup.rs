//! From flags to a client: the TLS files and the endpoint list.
//!
//! Why a module of its own: every subcommand needs the same client, and
//! the TLS flags' combinations are usage errors (exit 2, nothing sent)
//! that clap cannot express alone (e.g. a file that cannot be read).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metawal_client::{tls, with_scheme, Client};

use crate::cli::Cli;
use crate::exit::CtlError;

/// The HTTPS client config from `--cacert`/`--cert`/`--key`; `None`
/// without `--cacert` (https:// endpoints then use the built-in web roots).
/// An unreadable or bad file is a usage error: nothing was sent.
pub fn tls_config(
    cacert: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<metawal_client::ClientConfig>>, CtlError> {
    let Some(ca) = cacert else {
        if cert.is_some() || key.is_some() {
            return Err(CtlError::usage(
                "--cert and --key need --cacert (the CA that signed the nodes' certificates)",
            ));
        }
        return Ok(None);
    };
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(CtlError::usage(
                "--cert and --key go together: give both (or neither)",
            ))
        }
    };
    tls::client_config(ca, client)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| CtlError::usage(e.to_string()))
}

/// The client the command line asks for.
pub fn client(cli: &Cli) -> Result<Client, CtlError> {
    let tls = tls_config(
        cli.cacert.as_deref(),
        cli.cert.as_deref(),
        cli.key.as_deref(),
    )?;
    let endpoints: Vec<String> = cli
        .endpoints
        .iter()
        .map(|e| with_scheme(e, cli.cacert.is_some()))
        .collect();
    Ok(Client::new(
        &endpoints,
        Duration::from_millis(cli.timeout_ms),
        tls,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metawal_client::Failure;

    #[test]
    fn tls_files_that_cannot_be_read_are_usage_errors() {
        assert!(tls_config(None, None, None).unwrap().is_none());
        let missing = Path::new("/nonexistent/metawalctl-test/ca.pem");
        let err = tls_config(Some(missing), None, None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(
            err.message.contains("CA certificate") && err.message.contains("ca.pem"),
            "{}",
            err.message
        );
        let err = tls_config(Some(missing), Some(missing), None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        let err = tls_config(None, Some(missing), Some(missing)).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(err.message.contains("--cacert"), "{}", err.message);
        // A file with no certificate in it.
        let dir = std::env::temp_dir().join(format!("metawalctl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty), None, None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(
            err.message.contains("no PEM CERTIFICATE"),
            "{}",
            err.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
