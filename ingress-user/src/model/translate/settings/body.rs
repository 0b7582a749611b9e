//! Request and response bodies: the size limit (`proxy-body-size`) and
//! buffering (`proxy-request-buffering`, `proxy-buffering` and their sizes).

use super::*;

impl Cx<'_> {
    /// `proxy-body-size`: nginx size syntax, "0" for no limit.
    pub(in crate::model::translate) fn body_limit(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<u64> {
        let Some(v) = annotations::get(ing, "proxy-body-size") else {
            return self.config.body_limit;
        };
        match annotations::parse_size(v) {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                self.warn_ingress(
                    id,
                    &format!(
                        "proxy-body-size {v:?} is not a size (like 512k, 8m, 1g, or 0 for no limit); using the default ({})",
                        match self.config.body_limit {
                            Some(n) => format!("{n} bytes"),
                            None => "no limit".into(),
                        }
                    ),
                );
                self.config.body_limit
            }
        }
    }

    /// `proxy-request-buffering` and `client-body-buffer-size`: the bytes
    /// of a body kept in memory when bodies are read whole first.
    pub(in crate::model::translate) fn request_buffer(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<u32> {
        let c = &self.config;
        let (on, size) = (c.request_buffering, c.client_body_buffer);
        if !self.on_off(id, ing, "proxy-request-buffering", on) {
            return None;
        }
        Some(self.buffer_size(id, ing, "client-body-buffer-size", size))
    }

    /// `proxy-buffering`, `proxy-buffer-size` and `proxy-buffers-number`:
    /// the bytes of a response read ahead of the client.
    pub(in crate::model::translate) fn response_buffer(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<u32> {
        let c = &self.config;
        let (on, size, number) = (c.response_buffering, c.proxy_buffer_size, c.proxy_buffers);
        if !self.on_off(id, ing, "proxy-buffering", on) {
            return None;
        }
        let size = self.buffer_size(id, ing, "proxy-buffer-size", size);
        let number = match annotations::get(ing, "proxy-buffers-number") {
            None => number,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    self.warn_ingress(
                        id,
                        &format!(
                            "proxy-buffers-number {v:?} is not a whole number from 1 to 1024; {number} is used"
                        ),
                    );
                    number
                }
            },
        };
        // At most 1 GiB read ahead per request.
        Some(size.saturating_mul(number).min(1 << 30))
    }

    /// An `on` / `off` annotation; `default` (the ConfigMap's) when absent
    /// or neither.
    fn on_off(&mut self, id: &NamespacedName, ing: &Ingress, name: &str, default: bool) -> bool {
        match annotations::get(ing, name) {
            None => default,
            Some("on") => true,
            Some("off") => false,
            Some(v) => {
                self.warn_ingress(
                    id,
                    &format!("{name} {v:?} is not on or off; the ConfigMap's setting applies"),
                );
                default
            }
        }
    }

    /// A buffer size annotation (1 byte to 64m); `default` otherwise.
    fn buffer_size(&mut self, id: &NamespacedName, ing: &Ingress, name: &str, default: u32) -> u32 {
        let Some(v) = annotations::get(ing, name) else {
            return default;
        };
        match annotations::parse_size(v) {
            Some(n) if (1..=64 << 20).contains(&n) => n as u32,
            _ => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{name} {v:?} is not a size from 1 byte to 64m; {default} bytes are used"
                    ),
                );
                default
            }
        }
    }
}
