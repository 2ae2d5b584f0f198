//! Placeholder: this binding is built by a later issue.
