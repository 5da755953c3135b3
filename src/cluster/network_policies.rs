//! networking.k8s.io/v1 NetworkPolicy as kube-apiserver stores it: its
//! strategy, in the registry's sense. `defaults` is
//! `pkg/apis/networking/v1/defaults.go` (each port's protocol is TCP unless
//! given; `policyTypes` is `[Ingress]`, plus `Egress` when there are egress
//! rules); `validate` is `pkg/apis/networking/validation`, with its field
//! paths and words, so kubectl prints what it would print against a real
//! cluster. `normalize` is both, what every write of a NetworkPolicy goes
//! through (`objects::apply_network_policy`).
//!
//! Pure. What the policies do to packets is decided elsewhere; this file
//! only decides what is stored.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fmt;

pub const INGRESS: &str = "Ingress";
pub const EGRESS: &str = "Egress";
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// One of kube-apiserver's `field.Error`s: the field's path and what is
/// wrong with it (`Invalid value: 0: must be between 1 and 65535, inclusive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// A value as kube-apiserver quotes it in `Invalid value: …`.
enum Value<'a> {
    Int(i32),
    Str(&'a str),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

fn invalid(field: String, value: Value<'_>, why: &str) -> FieldError {
    FieldError {
        field,
        detail: format!("Invalid value: {value}: {why}"),
    }
}

fn required(field: String, why: &str) -> FieldError {
    let detail = match why {
        "" => "Required value".to_string(),
        w => format!("Required value: {w}"),
    };
    FieldError { field, detail }
}

fn forbidden(field: String, why: &str) -> FieldError {
    FieldError {
        field,
        detail: format!("Forbidden: {why}"),
    }
}

fn not_supported(field: String, value: &str, supported: &[&str]) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    FieldError {
        field,
        detail: format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ),
    }
}

/// kube-apiserver's defaults: every port's protocol, the policy types, and
/// the (required) pod selector, which an empty one is written as `{}`.
pub fn defaults(np: &mut NetworkPolicy) {
    let spec = np.spec.get_or_insert_with(Default::default);
    spec.pod_selector.get_or_insert_with(Default::default);
    let ingress = spec.ingress.iter_mut().flatten().map(|r| &mut r.ports);
    let egress = spec.egress.iter_mut().flatten().map(|r| &mut r.ports);
    for port in ingress.chain(egress).flatten().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
    }
    if spec.policy_types.as_ref().is_none_or(|t| t.is_empty()) {
        let mut types = vec![INGRESS.to_string()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push(EGRESS.into());
        }
        spec.policy_types = Some(types);
    }
}

/// Every problem kube-apiserver would find, in its order.
pub fn validate(np: &NetworkPolicy) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = np.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        errs.push(required(
            "metadata.name".into(),
            "name or generateName is required",
        ));
    } else if let Err(m) = crate::lab::validate::dns_subdomain(&name) {
        errs.push(invalid("metadata.name".into(), Value::Str(&name), &m));
    }
    let Some(spec) = &np.spec else {
        return errs;
    };
    if let Some(s) = &spec.pod_selector {
        selector(s, "spec.podSelector", &mut errs);
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = format!("spec.ingress[{i}]");
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(p, &format!("{at}.ports[{j}]"), &mut errs);
        }
        for (j, p) in rule.from.iter().flatten().enumerate() {
            peer(p, &format!("{at}.from[{j}]"), &mut errs);
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let at = format!("spec.egress[{i}]");
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            port(p, &format!("{at}.ports[{j}]"), &mut errs);
        }
        for (j, p) in rule.to.iter().flatten().enumerate() {
            peer(p, &format!("{at}.to[{j}]"), &mut errs);
        }
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    if types.len() > 2 {
        errs.push(FieldError {
            field: "spec.policyTypes".into(),
            detail: format!("Invalid value: {types:?}: may not specify more than two policyTypes"),
        });
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if t != INGRESS && t != EGRESS {
            errs.push(not_supported(
                format!("spec.policyTypes[{i}]"),
                t,
                &[INGRESS, EGRESS],
            ));
        }
    }
    errs
}

/// Defaulted and validated: the object as stored, or kube-apiserver's
/// message (`NetworkPolicy "x" is invalid: spec…`, several in brackets).
pub fn normalize(mut np: NetworkPolicy) -> Result<NetworkPolicy, String> {
    np.metadata
        .namespace
        .get_or_insert_with(|| crate::lab::validate::DEFAULT_NAMESPACE.into());
    defaults(&mut np);
    let errs = validate(&np);
    if errs.is_empty() {
        return Ok(np);
    }
    let name = np.metadata.name.clone().unwrap_or_default();
    let each: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let all = match each.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    Err(format!("NetworkPolicy {name:?} is invalid: {all}"))
}

/// `ValidateNetworkPolicyPort`.
fn port(p: &NetworkPolicyPort, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(proto) = &p.protocol {
        if !PROTOCOLS.contains(&proto.as_str()) {
            errs.push(not_supported(format!("{at}.protocol"), proto, PROTOCOLS));
        }
    }
    let end = format!("{at}.endPort");
    match (&p.port, p.end_port) {
        (Some(IntOrString::Int(n)), end_port) => {
            if let Err(m) = port_number(*n) {
                errs.push(invalid(format!("{at}.port"), Value::Int(*n), m));
            }
            if let Some(e) = end_port {
                if e < *n {
                    // kube-apiserver names the port's value here, not
                    // endPort's (`field.Invalid(…endPort, port.IntVal, …)`).
                    errs.push(invalid(
                        end.clone(),
                        Value::Int(*n),
                        "must be greater than or equal to `port`",
                    ));
                }
                if let Err(m) = port_number(e) {
                    errs.push(invalid(end, Value::Int(e), m));
                }
            }
        }
        (Some(IntOrString::String(name)), end_port) => {
            if let Some(e) = end_port {
                errs.push(invalid(
                    end,
                    Value::Int(e),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for m in port_name(name) {
                errs.push(invalid(format!("{at}.port"), Value::Str(name), m));
            }
        }
        (None, Some(e)) => errs.push(invalid(
            end,
            Value::Int(e),
            "may not be specified when `port` is not specified",
        )),
        (None, None) => {}
    }
}

fn port_number(n: i32) -> Result<(), &'static str> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err("must be between 1 and 65535, inclusive")
    }
}

/// `IsValidPortName`: an IANA service name.
fn port_name(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters");
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen");
    }
    out
}

/// `ValidateNetworkPolicyPeer`: one kind of peer, or selectors together.
fn peer(p: &NetworkPolicyPeer, at: &str, errs: &mut Vec<FieldError>) {
    let mut kinds = 0;
    if let Some(s) = &p.pod_selector {
        kinds += 1;
        selector(s, &format!("{at}.podSelector"), errs);
    }
    if let Some(s) = &p.namespace_selector {
        kinds += 1;
        selector(s, &format!("{at}.namespaceSelector"), errs);
    }
    if let Some(b) = &p.ip_block {
        kinds += 1;
        ip_block(b, &format!("{at}.ipBlock"), errs);
    }
    if kinds == 0 {
        errs.push(required(at.into(), "must specify a peer"));
    } else if kinds > 1 && p.ip_block.is_some() {
        errs.push(forbidden(
            at.into(),
            "may not specify both ipBlock and another peer",
        ));
    }
}

/// `ValidateIPBlock`: a CIDR, and exceptions strictly inside it.
fn ip_block(b: &IPBlock, at: &str, errs: &mut Vec<FieldError>) {
    const NOT_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
    if b.cidr.is_empty() {
        errs.push(required(format!("{at}.cidr"), ""));
        return;
    }
    let Ok(cidr) = b.cidr.parse::<ipnet::IpNet>() else {
        errs.push(invalid(format!("{at}.cidr"), Value::Str(&b.cidr), NOT_CIDR));
        return;
    };
    for (i, e) in b.except.iter().flatten().enumerate() {
        let field = format!("{at}.except[{i}]");
        match e.parse::<ipnet::IpNet>() {
            Err(_) => errs.push(invalid(field, Value::Str(e), NOT_CIDR)),
            Ok(x)
                if !cidr.trunc().contains(&x.network()) || x.prefix_len() <= cidr.prefix_len() =>
            {
                errs.push(invalid(
                    field,
                    Value::Str(e),
                    "must be a strict subset of `cidr`",
                ))
            }
            Ok(_) => {}
        }
    }
}

/// `ValidateLabelSelector`'s rules for operators and values.
fn selector(s: &LabelSelector, at: &str, errs: &mut Vec<FieldError>) {
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{at}.matchExpressions[{i}]");
        let values = r.values.as_ref().is_some_and(|v| !v.is_empty());
        match r.operator.as_str() {
            "In" | "NotIn" if !values => errs.push(required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if values => errs.push(forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                format!("{at}.operator"),
                Value::Str(other),
                "not a valid selector operator",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> NetworkPolicy {
        let mut np: NetworkPolicy = serde_yaml_ng::from_str(yaml).unwrap();
        np.metadata.name.get_or_insert_with(|| "p".into());
        np
    }

    #[test]
    fn ports_default_to_tcp_and_policy_types_follow_the_rules() {
        let mut np = policy(
            "spec:\n  ingress:\n  - ports: [{port: 80}, {port: 53, protocol: UDP}]\n  egress:\n  - ports: [{port: http}]\n",
        );
        defaults(&mut np);
        let spec = np.spec.unwrap();
        let protos = |ports: &Option<Vec<NetworkPolicyPort>>| -> Vec<String> {
            ports
                .iter()
                .flatten()
                .map(|p| p.protocol.clone().unwrap())
                .collect()
        };
        assert_eq!(
            protos(&spec.ingress.as_ref().unwrap()[0].ports),
            ["TCP", "UDP"]
        );
        assert_eq!(protos(&spec.egress.as_ref().unwrap()[0].ports), ["TCP"]);
        assert_eq!(spec.policy_types.unwrap(), [INGRESS, EGRESS]);
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()));

        let types = |yaml: &str| {
            let mut np = policy(yaml);
            defaults(&mut np);
            np.spec.unwrap().policy_types.unwrap()
        };
        assert_eq!(types("spec: {}"), [INGRESS], "no rules: ingress only");
        assert_eq!(types("{}"), [INGRESS], "no spec at all");
        assert_eq!(types("spec: {egress: []}"), [INGRESS], "empty egress");
        assert_eq!(types("spec: {egress: [{}]}"), [INGRESS, EGRESS]);
        assert_eq!(
            types("spec: {policyTypes: [Egress], egress: [{}]}"),
            [EGRESS],
            "given types are kept"
        );
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        let mut once = policy("spec: {egress: [{ports: [{port: 1}]}]}");
        defaults(&mut once);
        let mut twice = once.clone();
        defaults(&mut twice);
        assert_eq!(once, twice);
    }

    /// (what, the spec's fields, the errors kube-apiserver gives), after
    /// defaulting.
    #[test]
    fn validation_as_kube_apiserver_words_it() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("a valid policy", "ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {a: b}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: web}, {port: 80, endPort: 90}]}]", &[]),
            ("IPv6", "egress: [{to: [{ipBlock: {cidr: 'fd00::/8', except: ['fd00:1::/32']}}]}]", &[]),
            (
                "endPort below port",
                "ingress: [{ports: [{port: 80, endPort: 70}]}]",
                &["spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"],
            ),
            (
                "endPort without a port",
                "ingress: [{ports: [{endPort: 70}]}]",
                &["spec.ingress[0].ports[0].endPort: Invalid value: 70: may not be specified when `port` is not specified"],
            ),
            (
                "endPort with a named port",
                "egress: [{ports: [{port: http, endPort: 70}]}]",
                &["spec.egress[0].ports[0].endPort: Invalid value: 70: may not be specified when `port` is non-numeric"],
            ),
            (
                "a port out of range",
                "ingress: [{ports: [{port: 0}, {port: 65536}]}]",
                &[
                    "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ingress[0].ports[1].port: Invalid value: 65536: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                "a bad port name",
                "ingress: [{ports: [{port: Web}]}]",
                &["spec.ingress[0].ports[0].port: Invalid value: \"Web\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"],
            ),
            (
                "an unknown protocol",
                "ingress: [{ports: [{port: 1, protocol: ICMP}]}]",
                &["spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""],
            ),
            (
                "a CIDR that is not one",
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
                &["spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
            ),
            (
                "an except outside its cidr, and one equal to it",
                "egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24, 10.0.0.0/16]}}]}]",
                &[
                    "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
                    "spec.egress[0].to[0].ipBlock.except[1]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`",
                ],
            ),
            (
                "ipBlock with a selector",
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
                &["spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"],
            ),
            (
                "an empty peer",
                "ingress: [{from: [{}]}]",
                &["spec.ingress[0].from[0]: Required value: must specify a peer"],
            ),
            (
                "an unknown policy type",
                "policyTypes: [Ingress, Sideways]",
                &["spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""],
            ),
            (
                "a selector operator that is not one",
                "podSelector: {matchExpressions: [{key: a, operator: Is, values: [b]}, {key: a, operator: In}]}",
                &[
                    "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid selector operator",
                    "spec.podSelector.matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                ],
            ),
        ];
        for (what, spec, want) in cases {
            let mut np = policy(&format!("spec: {{{spec}}}"));
            defaults(&mut np);
            let got: Vec<String> = validate(&np).iter().map(ToString::to_string).collect();
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn normalize_says_which_policy_and_lists_several_problems() {
        let np =
            policy("metadata: {name: bad}\nspec: {ingress: [{ports: [{port: 0}], from: [{}]}]}");
        let e = normalize(np).unwrap_err();
        assert_eq!(
            e,
            "NetworkPolicy \"bad\" is invalid: [spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ingress[0].from[0]: Required value: must specify a peer]"
        );
        let ok = normalize(policy("metadata: {name: ok}\nspec: {}")).unwrap();
        assert_eq!(ok.metadata.namespace.as_deref(), Some("default"));
        let e = normalize(policy("metadata: {name: Not_A_Name}")).unwrap_err();
        assert!(e.starts_with("NetworkPolicy \"Not_A_Name\" is invalid: metadata.name: Invalid value: \"Not_A_Name\": must be a lowercase RFC 1123 subdomain"), "{e}");
    }
}
