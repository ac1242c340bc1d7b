//! `/etc/vm-ctl.conf` (placeholder: being written).
