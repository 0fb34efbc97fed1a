//! The deliberate differences of the `istio-config` step: cases of
//! `../shared/conformance/istio-{validation,docs}` where meshwasm's verdict
//! is not Istio's, each group with its reason. docs/route.md lists the
//! refusals with the message the user sees. The step fails when a listed
//! case agrees with Istio: the list only shrinks.

/// Cases that differ from Istio for one reason.
pub struct Deliberate {
    /// Why meshwasm differs, and where that is documented.
    pub reason: &'static str,
    /// Case ids (`id` column of the runner's results).
    pub cases: &'static [&'static str],
}

/// `istio-validation` (Istio's pkg/config/validation test tables).
pub const VALIDATION: &[Deliberate] = &[
    Deliberate {
        reason: "delegation is not supported (docs/route.md): a VirtualService without hosts is a \
                 delegate, a rule with `delegate` a root; both are refused",
        cases: &[
            "virtualservice--delegate-with-no-hosts",
            "chainingvirtualservice--root-applies-to-sidecar-with-delegate",
            "chainingvirtualservice--delegate-with-sourcenamespace",
            "roothttproute--simple",
            "roothttproute--prefix-header-match",
            "roothttproute--exact-header-match",
            "roothttproute--regex-header-match",
            "roothttproute--regex-uri-match",
            "roothttproute--prefix-uri-match",
            "roothttproute--exact-uri-match",
            "roothttproute--prefix-queryparams-match",
            "roothttproute--exact-queryparams-match",
            "roothttproute--regex-queryparams-match",
            "delegatehttproute--simple",
            "delegatehttproute--weighted",
            "delegatehttproute--total-weight-gt-100",
            "delegatehttproute--total-weight-lt-100",
            "delegatehttproute--simple-redirect",
            "delegatehttproute--request-response-headers",
            "delegatehttproute--valid-headers",
            "delegatehttproute--nil-match",
            "delegatehttproute--valid-mirror-percentage",
        ],
    },
    Deliberate {
        reason: "`rewrite.uriRegexRewrite` is refused as not implemented (docs/route.md)",
        cases: &[
            "httprewrite--uriregexrewrite",
            "httprewrite--uriregexrewrite-and-authority",
            "uriregexrewrite--uriregexrewrite-happy-path",
        ],
    },
    Deliberate {
        reason: "a `subset` no DestinationRule of the document defines is refused (docs/route.md); \
                 Istio's webhook validates one resource at a time and never checks it",
        cases: &[
            "dataset--v1-virtualservice",
            "dataset--v1alpha3-virtualservice",
            "dataset--v1beta1-virtualservice",
            "istioctl--valid-pilot-configuration",
            "istioctl--exportto-eq",
            "istioctl--valid-resources-from-file-2nd-document",
        ],
    },
    Deliberate {
        reason: "`directResponse.status: 600`: Istio's validateHTTPStatus lets 600 through (its \
                 message says 200-599), Envoy's DirectResponseAction.status is [200, 600) \
                 (docs/route.md)",
        cases: &["httpstatus--600"],
    },
    Deliberate {
        reason: "a header value operator a filter cannot evaluate is refused with its path \
                 (docs/route.md): `%DOWNSTREAM_PEER_CERT_V_END(…)%` (no proxy-wasm property \
                 holds it), `%DYNAMIC_METADATA(…)%`",
        cases: &[
            "httpheadervalue--header-value-pct-downstream-peer-cert-v-end-pct-b-pct-d-pct-",
            "httpheadervalue--header-value-pct-dynamic-metadata-com-test-my-filter-pct",
        ],
    },
    Deliberate {
        reason: "`%HOSTNAME%` in a response header needs `envoy.hostname` (docs/route.md): the \
                 response stage has no request to read Istio's node name from, as the request \
                 side does",
        cases: &[
            "httproute--envoy-variable-set",
            "httproute--envoy-variable-add",
        ],
    },
];

/// `istio-docs` (the configurations of Istio's documentation and samples).
pub const DOCS: &[Deliberate] = &[
    Deliberate {
        reason: "a `subset` no DestinationRule of the document defines is refused (docs/route.md); \
                 no page of the docs gives the DestinationRule (the runner's pairing artifact)",
        cases: &[
            "ops_common-problems_network-issues--L111-vs",
            "ops_common-problems_network-issues--L160-vs",
            "reference_config_analysis_ist0130--L22-vs",
            "reference_config_networking_virtual-service--L1748-vs",
            "reference_config_networking_virtual-service--L1897-vs",
            "reference_config_networking_virtual-service--L2011-vs",
            "reference_config_networking_virtual-service--L2274-vs",
        ],
    },
    Deliberate {
        reason: "delegation is not supported (docs/route.md): the reference's delegate \
                 VirtualServices are refused",
        cases: &[
            "reference_config_networking_virtual-service--L616-vs",
            "reference_config_networking_virtual-service--L633-vs",
        ],
    },
    Deliberate {
        reason: "IST0106's example (weights 999 + 888): the page calls it invalid, Istio's \
                 webhook accepts it (validateWeight checks only < 0) and so does meshwasm, \
                 with a warning",
        cases: &["reference_config_analysis_ist0106--L20-vs"],
    },
    Deliberate {
        reason: "the snippet keeps a shell variable (`$NAMESPACE`, `${INGRESS_DOMAIN}`, …) that \
                 the docs' shell substitutes before `kubectl apply`; as written it is not a valid \
                 host or gateway name, and Istio refuses it too",
        cases: &[
            "examples_microservices-istio_istio-ingress-gateway--L35-vs",
            "setup_install_external-controlplane--L384-vs-dr",
            "tasks_observability_gateways--L72-vs-dr",
            "tasks_observability_gateways--L129-vs-dr",
            "tasks_observability_gateways--L186-vs-dr",
            "tasks_observability_gateways--L243-vs-dr",
            "tasks_observability_gateways--L315-vs-dr",
            "tasks_observability_gateways--L369-vs-dr",
            "tasks_observability_gateways--L423-vs-dr",
            "tasks_observability_gateways--L477-vs-dr",
        ],
    },
];
