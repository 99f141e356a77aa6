// FaaSFlow's 8 benchmark workflows: a short name and the path of each `flat_workflow.yaml`
// under `tests/fixtures/faasflow-v1/`. Shared by the tests that walk all of them
// (`include!`d, so it is one list).
const BENCHMARKS: [(&str, &str); 8] = [
    ("cycles", "benchmark/generator/cycles/flat_workflow.yaml"),
    ("epigenomics", "benchmark/generator/epigenomics/flat_workflow.yaml"),
    ("genome", "benchmark/generator/genome/flat_workflow.yaml"),
    ("soykb", "benchmark/generator/soykb/flat_workflow.yaml"),
    ("video", "benchmark/video/flat_workflow.yaml"),
    ("recognizer", "benchmark/illgal_recognizer/flat_workflow.yaml"),
    ("fileprocessing", "benchmark/fileprocessing/flat_workflow.yaml"),
    ("wordcount", "benchmark/wordcount/flat_workflow.yaml"),
];
