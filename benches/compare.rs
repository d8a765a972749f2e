fn main() { multiproc::init(); }
