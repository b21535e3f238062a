//! What the CNF examples share: their queries file.

/// The queries of `path`, one a line: one n-gram a clause (ids space-separated),
/// tab-separated, then the rarest clause's count; those whose rarest count is
/// below `min_rarest` are left out. Each clause is an OR of its one n-gram.
pub fn read_cnf_queries(path: &str, min_rarest: u64) -> Vec<(Vec<Vec<Vec<u32>>>, u64)> {
    std::fs::read_to_string(path)
        .expect("read the queries")
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let (rarest, clauses) = fields.split_last().expect("a count");
            let cnf = clauses
                .iter()
                .map(|c| {
                    vec![c
                        .split_whitespace()
                        .map(|t| t.parse().expect("an id"))
                        .collect()]
                })
                .collect();
            (cnf, rarest.parse().expect("the rarest clause's count"))
        })
        .filter(|(_, rarest)| *rarest >= min_rarest)
        .collect()
}
