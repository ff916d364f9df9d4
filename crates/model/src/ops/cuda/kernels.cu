// The NVRTC kernels of the custom CUDA operations and of the device input
// path. Read by `kernels.rs` with `include_str!` and compiled at run time for
// the device's own compute capability; `tests/cuda_kernels.rs` also compiles
// this file as C++ with CUDA's built-ins emulated on CPU threads and checks
// each kernel against the CPU operation.
//
// Element counts are 64-bit and the element-wise kernels loop grid-stride,
// so any launch size covers any tensor.

// y <- y + b[channel], then max(y, 0) if relu. y is [N, O, P] (P = Ho*Wo).
extern "C" __global__ void bias_act_f32(float* y, const float* b,
        unsigned long long len, unsigned long long p, unsigned long long o, int relu) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        float v = y[i] + b[(i / p) % o];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// dyr <- dy where y > 0, else 0 (the backward of a fused ReLU).
extern "C" __global__ void relu_mask_f32(const float* dy, const float* y, float* dyr,
        unsigned long long len) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        dyr[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

// db[c] += sum over samples and pixels of dy [N, O, P]; block (c, g) sums
// samples g, g + gridDim.y, ...; blockDim.x must be a power of two of at
// most 256. db starts at 0.
extern "C" __global__ void bias_grad_f32(const float* dy, float* db,
        unsigned int n, unsigned int o, unsigned long long p) {
    __shared__ float buf[256];
    unsigned int c = blockIdx.x;
    float acc = 0.0f;
    for (unsigned int s = blockIdx.y; s < n; s += gridDim.y) {
        const float* plane = dy + ((unsigned long long)s * o + c) * p;
        for (unsigned long long j = threadIdx.x; j < p; j += blockDim.x) acc += plane[j];
    }
    buf[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) buf[threadIdx.x] += buf[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(db + c, buf[0]);
}

// The paper's SGD step, in place: v <- m v - wd_lr w - lr g; w <- w + v.
extern "C" __global__ void paper_sgd_f32(float* v, float* w, const float* g,
        unsigned long long len, float m, float wd_lr, float lr) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < len; i += (unsigned long long)blockDim.x * gridDim.x) {
        float nv = m * v[i] - wd_lr * w[i] - lr * g[i];
        v[i] = nv;
        w[i] = w[i] + nv;
    }
}

// The loader's f32 input from its raw u8 crops: mean-image subtraction and
// PCA lighting in one pass,
//   out[n][c][r][i] = (x[n][c][r][i] - mean[y + r][x'][c] + light[n][c]) * scale
// with x' = x + i, or x + crop - 1 - i when view n is flipped (the u8 crop is
// already mirrored; the mean image is read at the same source pixels).
// x and out are [N, 3, crop, crop]; mean is the dataset's mean image, HWC
// [mean_h][mean_w][3]; meta holds 6 floats per view: y, x, flipped (0 or 1)
// and the lighting offset of R, G and B (0..255 units). The arithmetic is
// the loader's own, in the same order.
extern "C" __global__ void normalize_u8_f32(const unsigned char* x, float* out,
        const float* mean, const float* meta, unsigned long long len,
        unsigned int crop, unsigned int mean_w, float scale) {
    unsigned long long plane = (unsigned long long)crop * crop;
    for (unsigned long long k = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         k < len; k += (unsigned long long)blockDim.x * gridDim.x) {
        unsigned long long view = k / (3 * plane);
        unsigned int c = (unsigned int)((k / plane) % 3);
        unsigned int r = (unsigned int)((k % plane) / crop);
        unsigned int i = (unsigned int)(k % crop);
        const float* m = meta + view * 6;
        unsigned int y0 = (unsigned int)m[0], x0 = (unsigned int)m[1];
        unsigned int xs = m[2] != 0.0f ? x0 + crop - 1 - i : x0 + i;
        float mv = mean[((unsigned long long)(y0 + r) * mean_w + xs) * 3 + c];
        out[k] = ((float)x[k] - mv + m[3 + c]) * scale;
    }
}
