//! Import of Azure API Management semantic-cache policies.
//!
//! `<llm-semantic-cache-lookup>` / `<azure-openai-semantic-cache-lookup>` and
//! `<llm-semantic-cache-store>` / `<azure-openai-semantic-cache-store>` are translated into the
//! same JSON fields a native config uses, so both forms are validated by one code path.
//! Anything that has no faithful translation is rejected with the offending text quoted.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{json, Map, Value};

use crate::config::ConfigError;

/// Elements that only structure an APIM policy document.
const CONTAINERS: &[&str] = &[
    "policies", "inbound", "outbound", "backend", "on-error", "base",
];
const LOOKUP: &[&str] = &[
    "llm-semantic-cache-lookup",
    "azure-openai-semantic-cache-lookup",
];
const STORE: &[&str] = &[
    "llm-semantic-cache-store",
    "azure-openai-semantic-cache-store",
];

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError::Apim(msg.into())
}

fn attrs(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|x| err(format!("invalid attribute: {x}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|x| err(format!("invalid value of attribute `{key}`: {x}")))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

fn parse_bool(elem: &str, key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(format!(
            "<{elem} {key}=\"{v}\">: expected \"true\" or \"false\""
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(elem: &str, key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| err(format!("<{elem} {key}=\"{v}\">: expected a number")))
}

/// Translates one `<vary-by>` expression into a `vary_by` source.
fn vary_by(expr: &str) -> Result<Value, ConfigError> {
    let e = expr.trim();
    let unsupported = || {
        err(format!(
            "unsupported <vary-by> expression \"{e}\": supported are literals, \
             @(context.Subscription.Id), @(context.Request.Headers.GetValueOrDefault(\"name\"[, \"default\"])) \
             and @(context.Request.IpAddress)"
        ))
    };
    let Some(inner) = e.strip_prefix("@(").and_then(|s| s.strip_suffix(')')) else {
        if e.contains("@(") || e.contains("@{") {
            return Err(unsupported());
        }
        return Ok(json!({ "literal": e }));
    };
    let inner = inner.trim();
    // APIM identifies the subscription by the key the client sends in this header.
    if inner == "context.Subscription.Id" || inner == "context.Subscription.Key" {
        return Ok(json!({ "header": "ocp-apim-subscription-key" }));
    }
    if inner == "context.Request.IpAddress" {
        return Ok(json!({ "attribute": "source.address" }));
    }
    if let Some(args) = inner
        .strip_prefix("context.Request.Headers.GetValueOrDefault(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let name = args.split(',').next().unwrap_or("").trim();
        let name = name
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or_else(unsupported)?;
        if name.is_empty() {
            return Err(unsupported());
        }
        return Ok(json!({ "header": name.to_ascii_lowercase() }));
    }
    Err(unsupported())
}

/// Translates an APIM policy document (or fragment) into config JSON fields.
pub fn translate(xml: &str) -> Result<Value, ConfigError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Map::new();
    let mut vary: Vec<Value> = Vec::new();
    let mut in_lookup = false;
    let mut in_vary = false;
    let mut seen_lookup = false;
    let mut seen_store = false;
    let mut vary_text = String::new();
    loop {
        let ev = reader.read_event().map_err(|e| {
            err(format!(
                "invalid XML at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if CONTAINERS.contains(&name.as_str()) {
                    continue;
                }
                if in_lookup && name == "vary-by" {
                    in_vary = !empty;
                    vary_text.clear();
                    continue;
                }
                if LOOKUP.contains(&name.as_str()) {
                    if seen_lookup {
                        return Err(err(format!("<{name}> appears twice")));
                    }
                    seen_lookup = true;
                    lookup_attrs(&name, &attrs(e)?, &mut out)?;
                    in_lookup = !empty;
                } else if STORE.contains(&name.as_str()) {
                    if seen_store {
                        return Err(err(format!("<{name}> appears twice")));
                    }
                    seen_store = true;
                    store_attrs(&name, &attrs(e)?, &mut out)?;
                } else {
                    return Err(err(format!("unsupported element <{name}>")));
                }
            }
            Event::Text(t) => {
                if in_vary {
                    let text = t
                        .unescape()
                        .map_err(|e| err(format!("invalid <vary-by> text: {e}")))?;
                    vary_text.push_str(&text);
                } else if !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(err(format!(
                        "unexpected text \"{}\"",
                        String::from_utf8_lossy(&t)
                    )));
                }
            }
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "vary-by" && in_vary {
                    vary.push(vary_by(&vary_text)?);
                    in_vary = false;
                } else if LOOKUP.contains(&name.as_str()) {
                    in_lookup = false;
                }
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::CData(t) => {
                if in_vary {
                    vary_text.push_str(&String::from_utf8_lossy(&t));
                } else {
                    return Err(err("unexpected CDATA"));
                }
            }
        }
    }
    if !seen_lookup {
        return Err(err(
            "expected an <llm-semantic-cache-lookup> or <azure-openai-semantic-cache-lookup> element",
        ));
    }
    if !vary.is_empty() {
        out.insert("vary_by".into(), Value::Array(vary));
    }
    // APIM has no notion of the Redis bridge: use the documented local defaults.
    out.insert(
        "bridge".into(),
        json!({ "cluster": "semcache_bridge", "token_env": "SEMCACHE_BRIDGE_TOKEN" }),
    );
    Ok(Value::Object(out))
}

fn lookup_attrs(
    elem: &str,
    attrs: &[(String, String)],
    out: &mut Map<String, Value>,
) -> Result<(), ConfigError> {
    let mut embeddings = Map::new();
    for (k, v) in attrs {
        match k.as_str() {
            "score-threshold" => {
                out.insert(
                    "score_threshold".into(),
                    json!(parse_num::<f64>(elem, k, v)?),
                );
            }
            "embeddings-backend-id" => {
                embeddings.insert("cluster".into(), json!(v));
            }
            "embeddings-backend-auth" => {
                // Managed identity does not exist outside Azure: a key must come from the env.
                if v != "system-assigned" {
                    return Err(err(format!(
                        "<{elem} {k}=\"{v}\">: only \"system-assigned\" is known to APIM"
                    )));
                }
                embeddings.insert("api_key_env".into(), json!("AZURE_OPENAI_API_KEY"));
                embeddings.insert("auth_header".into(), json!("api_key"));
            }
            "ignore-system-messages" => {
                out.insert(
                    "ignore_system_messages".into(),
                    json!(parse_bool(elem, k, v)?),
                );
            }
            "max-message-count" => {
                out.insert(
                    "max_message_count".into(),
                    json!(parse_num::<u32>(elem, k, v)?),
                );
            }
            _ => return Err(err(format!("unsupported attribute <{elem} {k}=\"{v}\">"))),
        }
    }
    if !embeddings.contains_key("cluster") {
        return Err(err(format!(
            "<{elem}> needs embeddings-backend-id (the Envoy cluster of the embeddings endpoint)"
        )));
    }
    out.insert("embeddings".into(), Value::Object(embeddings));
    Ok(())
}

fn store_attrs(
    elem: &str,
    attrs: &[(String, String)],
    out: &mut Map<String, Value>,
) -> Result<(), ConfigError> {
    for (k, v) in attrs {
        match k.as_str() {
            "duration" => {
                out.insert("ttl_seconds".into(), json!(parse_num::<u64>(elem, k, v)?));
            }
            _ => return Err(err(format!("unsupported attribute <{elem} {k}=\"{v}\">"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, VaryBy};

    const POLICY: &str = r#"<policies>
      <inbound>
        <base />
        <llm-semantic-cache-lookup score-threshold="0.05" embeddings-backend-id="semcache_embeddings"
            ignore-system-messages="true" max-message-count="10">
          <vary-by>@(context.Subscription.Id)</vary-by>
          <vary-by>@(context.Request.Headers.GetValueOrDefault("X-Tenant", ""))</vary-by>
        </llm-semantic-cache-lookup>
      </inbound>
      <outbound>
        <llm-semantic-cache-store duration="60" />
        <base />
      </outbound>
    </policies>"#;

    #[test]
    fn translates_lookup_store_and_vary_by() {
        let (c, _) = Config::parse(POLICY).unwrap();
        assert_eq!(c.score_threshold, 0.05);
        assert_eq!(c.ttl_seconds, 60);
        assert_eq!(c.embeddings.cluster, "semcache_embeddings");
        assert!(c.ignore_system_messages);
        assert_eq!(c.max_message_count, Some(10));
        assert_eq!(
            c.vary_by,
            vec![
                VaryBy::Header("ocp-apim-subscription-key".into()),
                VaryBy::Header("x-tenant".into())
            ]
        );
        assert_eq!(c.bridge.cluster, "semcache_bridge");
    }

    #[test]
    fn json_wrapper_fields_override_the_policy() {
        let wrapped = serde_json::json!({
            "apim_policy": POLICY,
            "ttl_seconds": 120,
            "bridge": {"cluster": "other_bridge"}
        })
        .to_string();
        let (c, _) = Config::parse(&wrapped).unwrap();
        assert_eq!(c.ttl_seconds, 120);
        assert_eq!(c.bridge.cluster, "other_bridge");
        assert_eq!(c.score_threshold, 0.05);
    }

    #[test]
    fn unsupported_parts_are_quoted_in_the_error() {
        let e = Config::parse(
            r#"<llm-semantic-cache-lookup score-threshold="0.1" embeddings-backend-id="e"><vary-by>@(context.User.Id)</vary-by></llm-semantic-cache-lookup>"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"@(context.User.Id)\""), "{e}");
        let e = Config::parse(
            r#"<llm-semantic-cache-lookup score-threshold="0.1" embeddings-backend-id="e" colour="red"/>"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour=\"red\""), "{e}");
        let e = Config::parse(r#"<set-header name="x"/>"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("<set-header>"), "{e}");
        let e = Config::parse(
            r#"<llm-semantic-cache-lookup score-threshold="2" embeddings-backend-id="e"/>"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("score_threshold"), "{e}");
        let e = Config::parse("<llm-semantic-cache-lookup")
            .unwrap_err()
            .to_string();
        assert!(e.contains("APIM"), "{e}");
    }
}
