//! Entry point; the command line arrives with `cli`.

fn main() {}
