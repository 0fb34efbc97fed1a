//! The seed service's mux (gorilla/mux semantics) and injected failures as
//! pure decisions, shared by the real [`super::ProductService`] and the
//! harness backend's emulated one ([`crate::scenario::product`]); each builds
//! its own response from them.

/// What the seed's mux answers for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeedRoute {
    /// `301` to this location: the cleaned path, the query kept.
    Redirect(String),
    /// `GET /api/products`: `200` with the product JSON and `service-version`.
    Products,
    /// `GET /health`: `200`, `OK` as plain text.
    Health,
    /// Another method on a known path: `405`, empty body.
    MethodNotAllowed,
    /// Any other path: `404 page not found\n` as plain text, `nosniff`.
    NotFound,
}

/// The seed's routes: `/api/products` and `/health`, GET only; an unclean
/// `path` is redirected to its cleaned form.
pub(crate) fn seed_route(is_get: bool, path: &str, query: Option<&str>) -> SeedRoute {
    let clean = clean_path(path);
    if clean != path {
        return SeedRoute::Redirect(match query {
            Some(q) => format!("{clean}?{q}"),
            None => clean,
        });
    }
    match (path, is_get) {
        ("/api/products", true) => SeedRoute::Products,
        ("/health", true) => SeedRoute::Health,
        ("/api/products" | "/health", false) => SeedRoute::MethodNotAllowed,
        _ => SeedRoute::NotFound,
    }
}

/// An injected failure of `version`: its status (`status` when HTTP can carry
/// it, else `500`) and plain-text body.
pub(crate) fn injected(version: &str, status: u16) -> (u16, String) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    (status, format!("injected {status} from {version}\n"))
}

/// gorilla/mux `cleanPath`: Go's `path.Clean`, keeping a trailing slash.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_owned();
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_like_gorilla_mux() {
        assert_eq!(clean_path("//x"), "/x");
        assert_eq!(clean_path("/a/../b/"), "/b/");
        assert_eq!(clean_path("/api/products"), "/api/products");
        assert_eq!(clean_path("/"), "/");
    }
}
