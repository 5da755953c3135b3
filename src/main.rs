fn main() {
    std::process::exit(netlab::cli::main());
}
