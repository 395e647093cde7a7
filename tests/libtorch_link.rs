//! The libtorch set-up: a tch binary runs from the test harness with no environment variables,
//! and CUDA is usable whenever libtorch_cuda is present and a GPU is visible.

#[test]
fn tch_computes_on_cpu() {
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let s: f64 = t.sum(tch::Kind::Float).double_value(&[]);
    assert_eq!(s, 6.0);
}

#[test]
fn cuda_matmul_when_available() {
    if !neg_hooks::cuda_available() {
        eprintln!(
            "skipped: CUDA is not available on this machine (no GPU or driver visible to libtorch)"
        );
        return;
    }
    let device = tch::Device::Cuda(0);
    let a = tch::Tensor::ones([4, 4], (tch::Kind::Float, device));
    let b = a.matmul(&a);
    assert_eq!(b.sum(tch::Kind::Float).double_value(&[]), 64.0);
}
