// C entry points over the emulated kernels: each takes the launch's grid and
// block (x, y, z) and the kernel's own arguments, and runs the launch.
static dim3 d3(const unsigned int* v) { return dim3{v[0], v[1], v[2]}; }

extern "C" void emu_bias_act_f32(const unsigned int* grid, const unsigned int* block,
        float* y, const float* b, unsigned long long len, unsigned long long p,
        unsigned long long o, int relu) {
    emu_launch(d3(grid), d3(block), [=] { bias_act_f32(y, b, len, p, o, relu); });
}

extern "C" void emu_relu_mask_f32(const unsigned int* grid, const unsigned int* block,
        const float* dy, const float* y, float* dyr, unsigned long long len) {
    emu_launch(d3(grid), d3(block), [=] { relu_mask_f32(dy, y, dyr, len); });
}

extern "C" void emu_bias_grad_f32(const unsigned int* grid, const unsigned int* block,
        const float* dy, float* db, unsigned int n, unsigned int o, unsigned long long p) {
    emu_launch(d3(grid), d3(block), [=] { bias_grad_f32(dy, db, n, o, p); });
}

extern "C" void emu_paper_sgd_f32(const unsigned int* grid, const unsigned int* block,
        float* v, float* w, const float* g, unsigned long long len, float m, float wd_lr,
        float lr) {
    emu_launch(d3(grid), d3(block), [=] { paper_sgd_f32(v, w, g, len, m, wd_lr, lr); });
}

extern "C" void emu_normalize_u8_f32(const unsigned int* grid, const unsigned int* block,
        const unsigned char* x, float* out, const float* mean, const float* meta,
        unsigned long long len, unsigned int crop, unsigned int mean_w, float scale) {
    emu_launch(d3(grid), d3(block),
               [=] { normalize_u8_f32(x, out, mean, meta, len, crop, mean_w, scale); });
}
