//! semcache filter glue
