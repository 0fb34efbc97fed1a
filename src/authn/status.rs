//! Why a token was refused, as one flat enum whose strings are Envoy's
//! (google/jwt_verify_lib `src/status.cc`, SPEC.md §RequestAuthentication
//! Behaviour 4): the reply body is the string, the status 401 — 403 for an
//! audience refusal — and the first failure wins (STYLE.md rule 9).

/// A JWT verification failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtStatus {
    /// Not three dot-separated sections.
    BadFormat,
    /// Header not base64url.
    HeaderBadBase64,
    /// Header not JSON.
    HeaderBadJson,
    /// `alg` missing or not a string.
    HeaderBadAlg,
    /// `alg` not implemented (`none` included).
    AlgNotImplemented,
    /// `kid` not a string.
    HeaderBadKid,
    /// Payload not base64url.
    PayloadBadBase64,
    /// Payload not JSON.
    PayloadBadJson,
    /// `iss` not a string.
    PayloadIssNotString,
    /// `sub` not a string.
    PayloadSubNotString,
    /// `iat` not a positive 64-bit integer.
    PayloadIatNotPositive,
    /// `nbf` not a positive 64-bit integer.
    PayloadNbfNotPositive,
    /// `exp` not a positive 64-bit integer.
    PayloadExpNotPositive,
    /// `iat` not a number.
    PayloadIatNotInteger,
    /// `nbf` not a number.
    PayloadNbfNotInteger,
    /// `exp` not a number.
    PayloadExpNotInteger,
    /// The key set has no usable key.
    JwksNoValidKeys,
    /// `jti` not a string.
    PayloadJtiNotString,
    /// `aud` neither a string nor a list of strings.
    PayloadAudNotString,
    /// Signature not base64url.
    SignatureBadBase64,
    /// `nbf` in the future (beyond the skew).
    NotYetValid,
    /// `exp` in the past (beyond the skew).
    Expired,
    /// No rule has the token's issuer.
    UnknownIssuer,
    /// No accepted audience.
    AudienceNotAllowed,
    /// The signature does not verify.
    VerificationFails,
    /// No key fits the token's `kid` / `alg`.
    KidAlgNotMatched,
    /// The remote JWKS could not be fetched.
    JwksFetchFailed,
    /// Several tokens where one is allowed.
    MultipleTokens,
    /// An Ed25519 signature of the wrong length.
    Ed25519WrongLength,
}

impl JwtStatus {
    /// Envoy's string for the status (the reply body).
    pub fn message(self) -> &'static str {
        match self {
            JwtStatus::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            JwtStatus::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            JwtStatus::HeaderBadJson => "Jwt header is an invalid JSON",
            JwtStatus::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            JwtStatus::AlgNotImplemented => "Jwt header [alg] is not supported",
            JwtStatus::HeaderBadKid => "Jwt header [kid] field is not a string",
            JwtStatus::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            JwtStatus::PayloadBadJson => "Jwt payload is an invalid JSON",
            JwtStatus::PayloadIssNotString => "Jwt payload [iss] field is not a string",
            JwtStatus::PayloadSubNotString => "Jwt payload [sub] field is not a string",
            JwtStatus::PayloadIatNotPositive => {
                "Jwt payload [iat] field is not a positive 64 bit integer"
            }
            JwtStatus::PayloadNbfNotPositive => {
                "Jwt payload [nbf] field is not a positive 64 bit integer"
            }
            JwtStatus::PayloadExpNotPositive => {
                "Jwt payload [exp] field is not a positive 64 bit integer"
            }
            JwtStatus::PayloadIatNotInteger => "Jwt payload [iat] field is not an integer",
            JwtStatus::PayloadNbfNotInteger => "Jwt payload [nbf] field is not an integer",
            JwtStatus::PayloadExpNotInteger => "Jwt payload [exp] field is not an integer",
            JwtStatus::JwksNoValidKeys => "Jwks doesn't have any valid public key",
            JwtStatus::PayloadJtiNotString => "Jwt payload [jti] field is not a string",
            JwtStatus::PayloadAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            JwtStatus::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            JwtStatus::NotYetValid => "Jwt not yet valid",
            JwtStatus::Expired => "Jwt is expired",
            JwtStatus::UnknownIssuer => "Jwt issuer is not configured",
            JwtStatus::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtStatus::VerificationFails => "Jwt verification fails",
            JwtStatus::KidAlgNotMatched => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtStatus::JwksFetchFailed => "Jwks remote fetch is failed",
            JwtStatus::MultipleTokens => "Found multiple Jwt tokens",
            JwtStatus::Ed25519WrongLength => "Jwt ED25519 signature is wrong length",
        }
    }

    /// The HTTP status Envoy's jwt_authn answers (`filter.cc` `onComplete`).
    pub fn http_status(self) -> u32 {
        match self {
            JwtStatus::AudienceNotAllowed => 403,
            _ => 401,
        }
    }

    /// `%RESPONSE_CODE_DETAILS%`: `jwt_authn_access_denied{<message>}` with
    /// spaces as `_` (Envoy replaces whitespace in details).
    pub fn details(self) -> &'static str {
        match self {
            JwtStatus::BadFormat => {
                "jwt_authn_access_denied{Jwt_is_not_in_the_form_of_Header.Payload.Signature_with_two_dots_and_3_sections}"
            }
            JwtStatus::HeaderBadBase64 => {
                "jwt_authn_access_denied{Jwt_header_is_an_invalid_Base64url_encoded}"
            }
            JwtStatus::HeaderBadJson => "jwt_authn_access_denied{Jwt_header_is_an_invalid_JSON}",
            JwtStatus::HeaderBadAlg => {
                "jwt_authn_access_denied{Jwt_header_[alg]_field_is_required_and_must_be_a_string}"
            }
            JwtStatus::AlgNotImplemented => {
                "jwt_authn_access_denied{Jwt_header_[alg]_is_not_supported}"
            }
            JwtStatus::HeaderBadKid => {
                "jwt_authn_access_denied{Jwt_header_[kid]_field_is_not_a_string}"
            }
            JwtStatus::PayloadBadBase64 => {
                "jwt_authn_access_denied{Jwt_payload_is_an_invalid_Base64url_encoded}"
            }
            JwtStatus::PayloadBadJson => "jwt_authn_access_denied{Jwt_payload_is_an_invalid_JSON}",
            JwtStatus::PayloadIssNotString => {
                "jwt_authn_access_denied{Jwt_payload_[iss]_field_is_not_a_string}"
            }
            JwtStatus::PayloadSubNotString => {
                "jwt_authn_access_denied{Jwt_payload_[sub]_field_is_not_a_string}"
            }
            JwtStatus::PayloadIatNotPositive => {
                "jwt_authn_access_denied{Jwt_payload_[iat]_field_is_not_a_positive_64_bit_integer}"
            }
            JwtStatus::PayloadNbfNotPositive => {
                "jwt_authn_access_denied{Jwt_payload_[nbf]_field_is_not_a_positive_64_bit_integer}"
            }
            JwtStatus::PayloadExpNotPositive => {
                "jwt_authn_access_denied{Jwt_payload_[exp]_field_is_not_a_positive_64_bit_integer}"
            }
            JwtStatus::PayloadIatNotInteger => {
                "jwt_authn_access_denied{Jwt_payload_[iat]_field_is_not_an_integer}"
            }
            JwtStatus::PayloadNbfNotInteger => {
                "jwt_authn_access_denied{Jwt_payload_[nbf]_field_is_not_an_integer}"
            }
            JwtStatus::PayloadExpNotInteger => {
                "jwt_authn_access_denied{Jwt_payload_[exp]_field_is_not_an_integer}"
            }
            JwtStatus::JwksNoValidKeys => {
                "jwt_authn_access_denied{Jwks_doesn't_have_any_valid_public_key}"
            }
            JwtStatus::PayloadJtiNotString => {
                "jwt_authn_access_denied{Jwt_payload_[jti]_field_is_not_a_string}"
            }
            JwtStatus::PayloadAudNotString => {
                "jwt_authn_access_denied{Jwt_payload_[aud]_field_is_not_a_string_or_string_list}"
            }
            JwtStatus::SignatureBadBase64 => {
                "jwt_authn_access_denied{Jwt_signature_is_an_invalid_Base64url_encoded}"
            }
            JwtStatus::NotYetValid => "jwt_authn_access_denied{Jwt_not_yet_valid}",
            JwtStatus::Expired => "jwt_authn_access_denied{Jwt_is_expired}",
            JwtStatus::UnknownIssuer => "jwt_authn_access_denied{Jwt_issuer_is_not_configured}",
            JwtStatus::AudienceNotAllowed => {
                "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}"
            }
            JwtStatus::VerificationFails => "jwt_authn_access_denied{Jwt_verification_fails}",
            JwtStatus::KidAlgNotMatched => {
                "jwt_authn_access_denied{Jwks_doesn't_have_key_to_match_kid_or_alg_from_Jwt}"
            }
            JwtStatus::JwksFetchFailed => "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}",
            JwtStatus::MultipleTokens => "jwt_authn_access_denied{Found_multiple_Jwt_tokens}",
            JwtStatus::Ed25519WrongLength => {
                "jwt_authn_access_denied{Jwt_ED25519_signature_is_wrong_length}"
            }
        }
    }
}

/// `Jwt is missing`: the token-less failure string (no `error=` in the
/// challenge); meshwasm lets token-less requests through, as Istio's
/// `allow_missing` requirement does.
pub const MISSING: &str = "Jwt is missing";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_the_message_with_spaces_as_underscores() {
        use JwtStatus::*;
        for s in [
            BadFormat,
            HeaderBadBase64,
            HeaderBadJson,
            HeaderBadAlg,
            AlgNotImplemented,
            HeaderBadKid,
            PayloadBadBase64,
            PayloadBadJson,
            PayloadIssNotString,
            PayloadSubNotString,
            PayloadIatNotPositive,
            PayloadNbfNotPositive,
            PayloadExpNotPositive,
            PayloadIatNotInteger,
            PayloadNbfNotInteger,
            PayloadExpNotInteger,
            JwksNoValidKeys,
            PayloadJtiNotString,
            PayloadAudNotString,
            SignatureBadBase64,
            NotYetValid,
            Expired,
            UnknownIssuer,
            AudienceNotAllowed,
            VerificationFails,
            KidAlgNotMatched,
            JwksFetchFailed,
            MultipleTokens,
            Ed25519WrongLength,
        ] {
            let want = format!(
                "jwt_authn_access_denied{{{}}}",
                s.message().replace(' ', "_")
            );
            assert_eq!(s.details(), want);
        }
    }
}
