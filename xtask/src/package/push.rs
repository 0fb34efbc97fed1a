//! `--push <registry>/<repo>`: each filter's image to
//! `<registry>/<repo>/<filter>` with the `oci-client` crate (the ORAS
//! project's OCI distribution client): the two blobs, then the manifest —
//! the very bytes of the OCI layout, so the registry's digest is the
//! layout's — once per tag, then a HEAD of each tag that must answer that
//! digest.
//!
//! A loopback registry (`127.0.0.1`, `localhost`, `[::1]`) is spoken to
//! over plain HTTP, as Docker does; others over HTTPS unless `--plain-http`.
//! Credentials: `MESHWASM_REGISTRY_USERNAME` and
//! `MESHWASM_REGISTRY_PASSWORD`, else anonymous.

use anyhow::{Context as _, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::image::{Image, MANIFEST};

/// Pushes every `(filter, image)` under every tag.
pub fn push_all(
    repo: &str,
    images: &[(String, Image)],
    tags: &[String],
    plain_http: bool,
) -> anyhow::Result<()> {
    let repo = repo.trim_end_matches('/');
    let Some((registry, _)) = repo.split_once('/') else {
        bail!("--push {repo}: expected REGISTRY/REPO, e.g. 127.0.0.1:5000/meshwasm");
    };
    // reqwest is built without a default TLS provider: ring, as the harness.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let loopback = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| registry == *h || registry.starts_with(&format!("{h}:")));
    let protocol = if plain_http || loopback {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    });
    let auth = match (
        std::env::var("MESHWASM_REGISTRY_USERNAME"),
        std::env::var("MESHWASM_REGISTRY_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for (filter, image) in images {
            for tag in tags {
                let reference: Reference = format!("{repo}/{filter}:{tag}")
                    .parse()
                    .with_context(|| format!("{repo}/{filter}:{tag} is not an image reference"))?;
                push_one(&client, &auth, &reference, image)
                    .await
                    .with_context(|| format!("pushing {reference}"))?;
                println!("pushed {reference} ({})", image.manifest.digest);
            }
        }
        Ok(())
    })
}

async fn push_one(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    image: &Image,
) -> anyhow::Result<()> {
    client
        .auth(reference, auth, RegistryOperation::Push)
        .await?;
    for blob in [&image.config, &image.wasm] {
        if !client.blob_exists(reference, &blob.digest).await? {
            client
                .push_blob(reference, blob.bytes.clone(), &blob.digest)
                .await?;
        }
    }
    client
        .push_manifest_raw(
            reference,
            image.manifest.bytes.clone(),
            http::HeaderValue::from_static(MANIFEST),
        )
        .await?;
    let digest = client.fetch_manifest_digest(reference, auth).await?;
    if digest != image.manifest.digest {
        bail!(
            "the registry serves {reference} as {digest}, not {}",
            image.manifest.digest
        );
    }
    Ok(())
}
