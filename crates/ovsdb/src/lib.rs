//! An RFC 7047 (OVSDB) client. (Being written: see the module docs once it lands.)
