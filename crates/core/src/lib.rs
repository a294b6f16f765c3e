//! semcache core
