//! A validated config with its secrets resolved: what one request runs with.

use std::rc::Rc;

use crate::breadth::SetSizes;
use crate::config::{Config, ConfigError, Secret};
use crate::speculation::ExactHitShare;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub config: Config,
    pub bridge_token: Option<String>,
    pub embeddings_key: Option<String>,
    /// Recent exact lookups of the requests that share these settings (one worker, one route).
    pub exact_hits: ExactHitShare,
    /// The vector sets' sizes as their last searches saw them (adaptive `EF`).
    pub set_sizes: Rc<SetSizes>,
}

fn resolve(
    field: &str,
    secret: &Secret,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match secret {
        Secret::None => Ok(None),
        Secret::Inline(v) => Ok(Some(v.clone())),
        Secret::Env(name) => match env(name) {
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(ConfigError::Field {
                field: field.to_string(),
                message: format!(
                    "environment variable {name} is not set; pass it to the plugin with \
                     vm_config.environment_variables.host_env_keys"
                ),
            }),
        },
    }
}

impl Settings {
    /// Reads secrets from the environment once, at configure time.
    pub fn resolve(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let bridge_token = resolve("bridge.token_env", &config.bridge.token, env)?;
        let embeddings_key = resolve("embeddings.api_key_env", &config.embeddings.api_key, env)?;
        Ok(Settings {
            config,
            bridge_token,
            embeddings_key,
            exact_hits: ExactHitShare::default(),
            set_sizes: Rc::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_env_secret_names_field_and_variable() {
        let (c, _) = Config::parse(
            r#"{"embeddings":{"cluster":"e","api_key_env":"K"},"bridge":{"cluster":"b","token_env":"T"}}"#,
        )
        .unwrap();
        let env = |k: &str| (k == "T").then(|| "tok".to_string());
        let e = Settings::resolve(c.clone(), &env).unwrap_err().to_string();
        assert!(
            e.contains("embeddings.api_key_env") && e.contains("K is not set"),
            "{e}"
        );
        let env2 = |k: &str| Some(format!("v-{k}"));
        let s = Settings::resolve(c, &env2).unwrap();
        assert_eq!(s.bridge_token.as_deref(), Some("v-T"));
        assert_eq!(s.embeddings_key.as_deref(), Some("v-K"));
    }
}
