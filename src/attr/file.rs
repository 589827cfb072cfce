//! Loading lists from TOML/JSON files and dumping lists as text or JSON.
