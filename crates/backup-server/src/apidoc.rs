//! `docs/api.md`, generated from the OpenAPI document (`backup-server api-md`, or
//! `bash docs/gen-api-md.sh`). A test checks that the committed file matches.

use serde_json::Value;

fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    match s["type"].as_str() {
        Some("array") => format!("array of {}", type_of(&s["items"])),
        Some(t) => match s["enum"].as_array() {
            Some(e) => format!(
                "{t}: {}",
                e.iter()
                    .map(|v| format!(
                        "`{}`",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => match s["format"].as_str() {
                Some(f) => format!("{t} ({f})"),
                None => t.to_string(),
            },
        },
        None => "any".to_string(),
    }
}

fn schema_text(s: &Value, _doc: &Value) -> String {
    if s.get("$ref").is_some() || s["type"] == "array" {
        return type_of(s);
    }
    properties(s)
}

fn properties(s: &Value) -> String {
    let Some(props) = s["properties"].as_object() else {
        return type_of(s);
    };
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::from("| Field | Type | Required | Description |\n|---|---|---|---|\n");
    for (k, v) in props {
        out.push_str(&format!(
            "| `{k}` | {} | {} | {} |\n",
            type_of(v),
            if required.contains(&k.as_str()) {
                "yes"
            } else {
                "no"
            },
            v["description"].as_str().unwrap_or("").replace('\n', " ")
        ));
    }
    out
}

/// Renders the OpenAPI document as Markdown: one section per operation, with its access
/// level, CLI command, parameters, request body and responses.
pub fn markdown(openapi: &str) -> String {
    let doc: Value = serde_json::from_str(openapi).unwrap_or(Value::Null);
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    out.push_str(&format!(
        "# {title}\n\n<!-- Generated from crates/backup-server/openapi.json by docs/gen-api-md.sh; do not edit. -->\n\n"
    ));
    if let Some(d) = doc["info"]["description"].as_str() {
        out.push_str(d.trim());
        out.push_str("\n\n");
    }
    out.push_str("| Method | Path | Summary | CLI |\n|---|---|---|---|\n");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let methods = ["get", "post", "put", "delete"];
    for (path, item) in &paths {
        for m in methods {
            if let Some(op) = item.get(m) {
                out.push_str(&format!(
                    "| {} | `{path}` | {} | `{}` |\n",
                    m.to_uppercase(),
                    op["summary"].as_str().unwrap_or(""),
                    op["x-cli-command"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out.push('\n');
    for (path, item) in &paths {
        for m in methods {
            let Some(op) = item.get(m) else { continue };
            out.push_str(&format!("## {} {path}\n\n", m.to_uppercase()));
            if let Some(s) = op["summary"].as_str() {
                out.push_str(&format!("{s}.\n\n"));
            }
            if let Some(d) = op["description"].as_str() {
                out.push_str(d.trim());
                out.push_str("\n\n");
            }
            let auth = if op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|a| a.is_empty())
            {
                "none".to_string()
            } else {
                op["x-access"].as_str().unwrap_or("read").to_string()
            };
            out.push_str(&format!("- Auth: {auth}\n"));
            if let Some(c) = op["x-cli-command"].as_str() {
                out.push_str(&format!("- CLI: `data-backup-manager {c}`\n"));
            }
            out.push('\n');
            if let Some(params) = op["parameters"].as_array() {
                out.push_str("| Parameter | In | Required | Description |\n|---|---|---|---|\n");
                for p in params {
                    out.push_str(&format!(
                        "| `{}` | {} | {} | {} |\n",
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                        if p["required"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            "no"
                        },
                        p["description"].as_str().unwrap_or("")
                    ));
                }
                out.push('\n');
            }
            if let Some(s) = op.pointer("/requestBody/content/application~1json/schema") {
                out.push_str("Request body:\n\n");
                out.push_str(&schema_text(s, &doc));
                out.push_str("\n\n");
            }
            if let Some(resps) = op["responses"].as_object() {
                for (code, r) in resps {
                    out.push_str(&format!(
                        "Response {code}: {}\n\n",
                        r["description"].as_str().unwrap_or("")
                    ));
                    let content = &r["content"];
                    if let Some(s) = content.pointer("/application~1json/schema") {
                        out.push_str(&schema_text(s, &doc));
                        out.push_str("\n\n");
                    }
                }
            }
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        out.push_str("## Schemas\n\n");
        for (name, s) in schemas {
            out.push_str(&format!("### {name}\n\n"));
            if let Some(d) = s["description"].as_str() {
                out.push_str(d.trim());
                out.push_str("\n\n");
            }
            out.push_str(&properties(s));
            out.push('\n');
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        out.push_str("## Schemas\n\n");
        for (name, s) in schemas {
            out.push_str(&format!("### {name}\n\n"));
            if let Some(d) = s["description"].as_str() {
                out.push_str(d.trim());
                out.push_str("\n\n");
            }
            out.push_str(&properties(s));
            out.push('\n');
        }
    }
    out
}
