//! A throwaway certificate authority for tests, the demo and the bench:
//! made with `rcgen` at run time, written as PEM files into a temp dir.
//!
//! Every node certificate is valid for `node-<id>.<cluster-id>` (what peers
//! check, see `metawal_actors::tls`), `localhost` and `127.0.0.1` (what
//! HTTPS clients on this machine connect to), for server and client auth.
//! Included by path from examples and the process harness, so it depends on
//! nothing but rcgen and std.

use std::path::{Path, PathBuf};

use metawal_actors::tls::{peer_name, TlsFiles};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What goes wrong making certificates (rcgen or file errors).
pub type CertError = Box<dyn std::error::Error + Send + Sync>;

/// A CA whose key stays in memory; its certificate is `<dir>/<name>-ca.pem`.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    cluster_id: String,
    issuer: Issuer<'static, KeyPair>,
    ca_path: PathBuf,
}

/// How a leaf certificate differs from a good one.
#[derive(Debug, Clone, Default)]
pub struct LeafOpts {
    /// Expired a year ago (valid 2020 – 2021).
    pub expired: bool,
    /// Extra DNS names.
    pub extra_names: Vec<String>,
}

impl TestCa {
    /// A new CA for `cluster_id`, writing its files into `dir` with
    /// `name` as the prefix (two CAs can share a dir).
    pub fn new(dir: &Path, name: &str, cluster_id: &str) -> Result<TestCa, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("metawal {name} CA"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, cert.pem())?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cluster_id: cluster_id.to_string(),
            issuer: Issuer::new(params, key),
            ca_path,
        })
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.ca_path.clone()
    }

    /// A good certificate for node `id`.
    pub fn node(&self, id: u64) -> Result<TlsFiles, CertError> {
        self.node_with(id, &LeafOpts::default())
    }

    /// A certificate for node `id`, varied by `opts`.
    pub fn node_with(&self, id: u64, opts: &LeafOpts) -> Result<TlsFiles, CertError> {
        let mut names = vec![peer_name(id, &self.cluster_id), "localhost".to_string()];
        names.extend(opts.extra_names.iter().cloned());
        let file = format!(
            "{}-node-{id}{}",
            self.name,
            if opts.expired { "-expired" } else { "" }
        );
        self.leaf(&file, names, opts)
    }

    /// A client certificate (for HTTPS client auth), named `name`.
    pub fn client(&self, name: &str) -> Result<TlsFiles, CertError> {
        self.leaf(
            &format!("{}-client-{name}", self.name),
            vec![name.to_string()],
            &LeafOpts::default(),
        )
    }

    fn leaf(&self, file: &str, names: Vec<String>, opts: &LeafOpts) -> Result<TlsFiles, CertError> {
        let mut params = CertificateParams::new(names.clone())?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        if opts.expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2100, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}-key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok(TlsFiles {
            cert: cert_path,
            key: key_path,
            ca: self.ca_path.clone(),
        })
    }
}
