/// jemalloc, with its background threads handing back what was freed:
/// a big lab's process allocates hundreds of MiB while it comes up and keeps
/// about half. glibc's malloc left that half scattered over the heap (the
/// scale lab's process: 280 MiB resident for 190 MiB in use, even trimmed
/// every 5 s); jemalloc's decay purging brings it to 234 MiB within seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    std::process::exit(netlab::cli::main());
}
