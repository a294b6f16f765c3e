//! semcache: the proxy-wasm glue.
//!
//! This is the only place that calls the host. Each callback reads what the state machine in
//! `semcache-core` needs, steps it, and applies the effects it returns. Host calls go through
//! `proxy_wasm::hostcalls` so that a failing call is handled here instead of panicking the VM.

mod metrics;
mod route;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as HostAction, BufferType, ContextType, LogLevel, MapType};

use semcache_core::config::Config;
use semcache_core::machine::{
    Action, CalloutResult, Effect, LogLevel as CoreLevel, Machine, RequestHead, Target,
};
use semcache_core::settings::Settings;

use crate::metrics::Metrics;
use crate::route::Routes;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Logs each kind of failure at most once a minute per VM: fail open, count it, log it once.
#[derive(Default)]
struct LogOnce {
    last: RefCell<HashMap<&'static str, u64>>,
}

impl LogOnce {
    fn log(&self, level: CoreLevel, key: &'static str, msg: &str, now_ms: u64) {
        if level == CoreLevel::Debug {
            log::debug!("{msg}");
            return;
        }
        let mut last = self.last.borrow_mut();
        let due = last
            .get(key)
            .is_none_or(|t| now_ms.saturating_sub(*t) >= 60_000);
        if due {
            last.insert(key, now_ms);
            log::warn!("{msg}");
        }
    }
}

/// What every HTTP context of one plugin shares.
struct Shared {
    routes: Routes,
    metrics: Metrics,
    log: LogOnce,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(e) => {
                log::error!("semcache config: cannot read the plugin configuration: {e:?}");
                return false;
            }
        };
        let Ok(text) = String::from_utf8(raw) else {
            log::error!("semcache config: the plugin configuration is not UTF-8");
            return false;
        };
        let parsed = Config::parse(&text)
            .and_then(|(config, value)| Settings::resolve(config, &env).map(|s| (s, value)));
        let (settings, value) = match parsed {
            Ok(v) => v,
            Err(e) => {
                // Returning false makes Envoy refuse the configuration; this line says why.
                log::error!("{e}");
                return false;
            }
        };
        let metrics = match Metrics::define() {
            Ok(m) => m,
            Err(e) => {
                log::error!("semcache: cannot define metrics: {e:?}");
                return false;
            }
        };
        self.shared = Some(Rc::new(Shared {
            routes: Routes::new(Rc::new(settings), value),
            metrics,
            log: LogOnce::default(),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.as_ref()?;
        Some(Box::new(Http {
            shared: Rc::clone(shared),
            machine: None,
            pending: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    shared: Rc<Shared>,
    machine: Option<Machine>,
    /// The callouts the machine waits for (at most two: an exact lookup and a speculative
    /// embedding), by token.
    pending: Vec<(u32, Target)>,
}

/// A whole host buffer (request body, response chunk, callout body); empty when unavailable.
fn read_buffer(buffer: BufferType, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(buffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value(map, name).ok().flatten()
}

fn to_host(a: Action) -> HostAction {
    match a {
        Action::Continue => HostAction::Continue,
        Action::Pause => HostAction::Pause,
    }
}

impl Http {
    fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                self.apply_one(e, &mut next);
            }
            queue = next;
        }
    }

    fn apply_one(&mut self, e: Effect, follow_up: &mut Vec<Effect>) {
        let m = &self.shared.metrics;
        match e {
            Effect::RemoveRequestHeader(name) => {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
            }
            Effect::RemoveResponseHeader(name) => {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
            }
            Effect::LocalGet(key) => {
                // A failed read is an empty slot: the exact lookup in Redis follows.
                let value = hostcalls::get_shared_data(&key).ok().and_then(|(v, _)| v);
                if let Some(machine) = self.machine.as_mut() {
                    machine.on_local(value.as_deref(), now_ms(), follow_up);
                }
            }
            Effect::LocalPut(key, value) => {
                let _ = hostcalls::set_shared_data(&key, Some(&value), None);
            }
            Effect::SetResponseHeader(name, value) => {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &name, Some(&value));
            }
            Effect::Dispatch(c) => {
                let headers: Vec<(&str, &str)> = c
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match hostcalls::dispatch_http_call(
                    &c.cluster,
                    headers,
                    Some(&c.body),
                    vec![],
                    Duration::from_millis(c.timeout_ms),
                ) {
                    Ok(token) => self.pending.push((token, c.target)),
                    Err(status) => {
                        self.shared.log.log(
                            CoreLevel::Warn,
                            "dispatch",
                            &format!(
                                "semcache: cannot call cluster {} ({status:?}); is it defined?",
                                c.cluster
                            ),
                            now_ms(),
                        );
                        if let Some(machine) = self.machine.as_mut() {
                            machine.on_dispatch_failed(c.target, now_ms(), follow_up);
                        }
                    }
                }
            }
            Effect::Forget(target) => self.pending.retain(|(_, t)| *t != target),
            Effect::SendResponse {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                if let Err(e) = hostcalls::send_http_response(status, headers, Some(&body)) {
                    log::warn!("semcache: cannot send the cached response: {e:?}");
                    let _ = hostcalls::resume_http_request();
                }
            }
            Effect::ResumeRequest => {
                let _ = hostcalls::resume_http_request();
            }
            Effect::ResumeResponse => {
                let _ = hostcalls::resume_http_response();
            }
            Effect::Count(c, n) => m.count(c, n),
            Effect::Record(h, v) => m.record(h, v),
            Effect::Log(level, key, msg) => self.shared.log.log(level, key, &msg, now_ms()),
        }
    }

    fn step<F>(&mut self, f: F) -> HostAction
    where
        F: FnOnce(&mut Machine, &mut Vec<Effect>) -> Action,
    {
        let Some(machine) = self.machine.as_mut() else {
            return HostAction::Continue;
        };
        let mut effects = Vec::new();
        let action = f(machine, &mut effects);
        self.apply(effects);
        to_host(action)
    }
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        self.step(|m, fx| {
            m.on_stream_done(fx);
            Action::Continue
        });
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(i) = self.pending.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, target) = self.pending.swap_remove(i);
        // A reset or connection failure arrives without headers.
        let status = if num_headers == 0 {
            None
        } else {
            header(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.parse::<u16>().ok())
        };
        let body = read_buffer(BufferType::HttpCallResponseBody, body_size);
        let now = now_ms();
        self.step(|m, fx| {
            m.on_callout(
                CalloutResult {
                    target,
                    status,
                    body: &body,
                },
                now,
                fx,
            );
            Action::Continue
        });
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        // One read of the whole map: every host read that returns data also calls into the VM
        // to allocate, so separate reads of `:method` and `:path` cost more than this one.
        let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let (method, path) = (pseudo(":method"), pseudo(":path"));
        // Cheap exit for everything that is not a completion request.
        if semcache_core::request::classify(method, path).is_none() {
            return HostAction::Continue;
        }
        let Some(settings) = self.shared.routes.for_current_route(&self.shared.log) else {
            return HostAction::Continue;
        };
        let machine = Machine::new(settings);
        let attributes = machine
            .attribute_paths()
            .iter()
            .map(|p| {
                let segs: Vec<&str> = p.iter().map(String::as_str).collect();
                hostcalls::get_property(segs)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .collect();
        self.machine = Some(machine);
        let head = RequestHead {
            method,
            path,
            headers: &headers,
            attributes,
        };
        let action = self.step(|m, fx| m.on_request_headers(&head, fx));
        if end_of_stream {
            let now = now_ms();
            return self.step(|m, fx| m.on_request_body(&[], now, fx));
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let Some(machine) = self.machine.as_ref() else {
            return HostAction::Continue;
        };
        if !machine.reading_body() {
            return HostAction::Continue;
        }
        if body_size > machine.max_request_body_bytes() {
            return self.step(|m, fx| m.on_request_body_too_large(fx));
        }
        if !end_of_stream {
            // Envoy keeps buffering while we pause; the whole body is read at its end.
            return HostAction::Pause;
        }
        let body = read_buffer(BufferType::HttpRequestBody, body_size);
        let now = now_ms();
        self.step(|m, fx| m.on_request_body(&body, now, fx))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let Some(machine) = self.machine.as_ref() else {
            return HostAction::Continue;
        };
        // Each host read costs a call into the VM for its allocation: read only when needed.
        let (status, ct, enc) = if machine.needs_response_head() {
            (
                header(MapType::HttpResponseHeaders, ":status").and_then(|s| s.parse::<u16>().ok()),
                header(MapType::HttpResponseHeaders, "content-type"),
                header(MapType::HttpResponseHeaders, "content-encoding"),
            )
        } else {
            (None, None, None)
        };
        let action =
            self.step(|m, fx| m.on_response_headers(status, ct.as_deref(), enc.as_deref(), fx));
        if end_of_stream {
            let now = now_ms();
            return self.step(|m, fx| m.on_response_body(&[], true, now, fx));
        }
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        if !self
            .machine
            .as_ref()
            .is_some_and(Machine::wants_response_body)
        {
            return HostAction::Continue;
        }
        // Not buffering: body_size is this chunk, which passes through unchanged.
        let chunk = read_buffer(BufferType::HttpResponseBody, body_size);
        let now = now_ms();
        self.step(|m, fx| m.on_response_body(&chunk, end_of_stream, now, fx))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> HostAction {
        if !self
            .machine
            .as_ref()
            .is_some_and(Machine::wants_response_body)
        {
            return HostAction::Continue;
        }
        let now = now_ms();
        self.step(|m, fx| m.on_response_body(&[], true, now, fx))
    }
}
