//! Per-route configuration: a JSON overlay in the route's metadata
//! (`filter_metadata.semcache.config`), merged over the plugin configuration.
//! Each distinct overlay is parsed once per VM and kept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use semcache_core::config::Config;
use semcache_core::machine::LogLevel;
use semcache_core::settings::Settings;
use serde_json::Value;

use crate::LogOnce;

const OVERLAY_PATH: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "semcache",
    "config",
];
/// Overlays are few (one per route); the bound only protects against a pathological config.
const MAX_OVERLAYS: usize = 256;

pub struct Routes {
    base: Rc<Settings>,
    base_value: Value,
    /// Overlay text -> settings, or `None` when the overlay is invalid (caching off there).
    overlays: RefCell<HashMap<String, Option<Rc<Settings>>>>,
}

impl Routes {
    pub fn new(base: Rc<Settings>, base_value: Value) -> Routes {
        Routes {
            base,
            base_value,
            overlays: RefCell::new(HashMap::new()),
        }
    }

    /// The settings for the current request's route; `None` means leave the request alone.
    pub fn for_current_route(&self, log: &LogOnce) -> Option<Rc<Settings>> {
        let overlay = hostcalls::get_property(OVERLAY_PATH.to_vec())
            .ok()
            .flatten();
        let Some(bytes) = overlay else {
            return Some(Rc::clone(&self.base));
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(found) = self.overlays.borrow().get(&text) {
            return found.clone();
        }
        let parsed = Config::with_overlay(&self.base_value, &text)
            .and_then(|c| Settings::resolve(c, &|k| std::env::var(k).ok()));
        let settings = match parsed {
            Ok(s) => Some(Rc::new(s)),
            Err(e) => {
                // Route metadata is not validated by Envoy: refuse to cache on that route.
                log.log(
                    LogLevel::Warn,
                    "overlay",
                    &format!(
                        "semcache: route overlay rejected, caching disabled on that route: {e}"
                    ),
                    crate::now_ms(),
                );
                None
            }
        };
        let settings = settings.filter(|s| s.config.enabled);
        let mut map = self.overlays.borrow_mut();
        if map.len() < MAX_OVERLAYS {
            map.insert(text, settings.clone());
        }
        settings
    }
}
