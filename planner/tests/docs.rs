//! Every YAML example in docs/wdl.md compiles, so the documentation stays true.

use faasflow_planner::load::load_str;

#[test]
fn every_wdl_example_compiles() {
    let doc = include_str!("../../docs/wdl.md");
    let mut count = 0;
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let src = block.split("```").next().unwrap();
        let loaded = load_str(src, &format!("docs/wdl.md example {}", i + 1), "example");
        if let Err(e) = &loaded {
            panic!("{e}\n--- example ---\n{src}");
        }
        assert!(loaded.unwrap().workflow.task_count() > 0);
        count += 1;
    }
    assert!(count >= 8, "docs/wdl.md lost its examples ({count} left)");
}
