// CUDA's built-ins emulated on CPU threads, so that the project's kernels
// (src/ops/cuda/kernels.cu) compile as C++ and run on a machine without a
// GPU:
//   - the blocks of a grid run one after another;
//   - each thread of a block is a real thread with its own threadIdx;
//   - __syncthreads() is a barrier of the block's threads;
//   - __shared__ memory belongs to the running block (a function-local
//     static: blocks never overlap, so no two blocks share it at once);
//   - atomicAdd is atomic (one lock for all of them).
// Compiled by tests/support/cuda_emu.rs with g++ -std=c++20 -pthread.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdio>
#include <functional>
#include <math.h>
#include <mutex>
#include <thread>
#include <vector>

struct uint3 { unsigned int x, y, z; };
typedef uint3 dim3;

static thread_local uint3 threadIdx;
// Set before the block's threads start, read by them only.
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;
static std::barrier<>* emu_block_barrier;
static std::mutex emu_atomic_lock;
// One launch at a time (the grid state above is global), as on one stream.
static std::mutex emu_launch_lock;

#define __global__
#define __device__
#define __shared__ static

static inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

static inline float atomicAdd(float* address, float value) {
    std::lock_guard<std::mutex> guard(emu_atomic_lock);
    float old = *address;
    *address = old + value;
    return old;
}

// Runs `kernel` over `grid` x `block`: block after block, each with
// blockDim.x * blockDim.y * blockDim.z threads of its own.
static void emu_launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
    std::lock_guard<std::mutex> one_launch(emu_launch_lock);
    gridDim = grid;
    blockDim = block;
    unsigned int threads = block.x * block.y * block.z;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                std::barrier<> barrier(threads);
                emu_block_barrier = &barrier;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned int t = 0; t < threads; ++t) {
                    pool.emplace_back([t, block, &kernel] {
                        threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                        kernel();
                    });
                }
                for (auto& th : pool) th.join();
                emu_block_barrier = nullptr;
            }
}
