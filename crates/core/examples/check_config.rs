//! Checks a plugin configuration file (JSON or APIM XML) with the filter's own parser.
//!
//! `cargo run -q -p semcache-core --example check_config -- FILE [--overlay JSON]`
//! exits 0 and prints a summary when the filter would accept it, else 1 and the error, which
//! names the field. Secrets read from the environment are not required to be set here.

use std::process::ExitCode;

use semcache_core::config::Config;
use semcache_core::settings::Settings;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: check_config FILE [--overlay JSON]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let result =
        Config::parse(&text).and_then(|(config, value)| match args.get(1).map(String::as_str) {
            Some("--overlay") => match args.get(2) {
                Some(overlay) => Config::with_overlay(&value, overlay),
                None => Ok(config),
            },
            _ => Ok(config),
        });
    // Env secrets only need to exist where Envoy runs.
    let result = result.and_then(|c| Settings::resolve(c, &|_| Some("set-at-runtime".into())));
    match result {
        Ok(s) => {
            let c = &s.config;
            println!(
                "ok: backend {:?}, score_threshold {} (cosine distance), ttl_seconds {}, embeddings cluster {}, bridge cluster {}, vary_by {}",
                c.backend, c.score_threshold, c.ttl_seconds, c.embeddings.cluster, c.bridge.cluster, c.vary_by.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
