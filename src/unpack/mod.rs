//! Layer application. OWNED BY HELPER: placeholder.
