/// jemalloc, with its background threads handing back what was freed:
/// a big lab's process allocates hundreds of MiB while it comes up and keeps
/// about half. glibc's malloc left that half scattered over the heap (the
/// scale lab's process: 280 MiB resident for 190 MiB in use, even trimmed
/// every 5 s); with jemalloc the scale lab's process settles at 226–236 MiB
/// after a peak of about 460 MiB at the end of `up`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    std::process::exit(netlab::cli::main());
}
