"""The book: profiles, the build, the claims engine, presentation and benchmarks."""
