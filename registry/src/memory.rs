//! What the registry's per-connection and per-session tables hold, for memory reports (the
//! `memsession` bench and docs/performance.md, "Memory per online peer").

use crate::registry::{Conn, Registry};

impl Registry {
    /// Bytes held by each per-connection and per-session table as allocated (capacity, not
    /// use), by name, with the size of one entry. Heap blocks the entries point to (a name, a
    /// buffered frame) are not included.
    pub fn table_bytes(&self) -> Vec<(&'static str, usize)> {
        let mut tables = vec![(
            "connections (dense table and index)",
            self.conns.table_bytes(),
        )];
        tables.extend(self.presence.table_bytes());
        tables.push((
            "admission (sources, pre-login)",
            self.admission.table_bytes(),
        ));
        tables
    }

    /// Bytes of one entry of the connection table and of the session table.
    pub fn entry_sizes() -> [(&'static str, usize); 2] {
        [
            ("connection", std::mem::size_of::<Conn>()),
            ("session", crate::presence::session_size()),
        ]
    }
}
