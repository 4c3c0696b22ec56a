using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace TauCluster.Engine;

/// <summary>What <see cref="KernelBench.Measure"/> found: a decode step's weight read against a plain read of the same bytes.</summary>
/// <param name="WeightType">The type the packed weights hold.</param>
/// <param name="WeightBytes">Bytes of the weights one decode step multiplies by (every layer's products and lm_head).</param>
/// <param name="MatMulMs">Time of those products for one row, the median of the repeats.</param>
/// <param name="SumMs">Time of a plain parallel sum over the same packed bytes, the median of the repeats.</param>
/// <param name="ForkJoinMicroseconds">One fork-join of an empty job split for every thread, back to back (workers awake).</param>
/// <param name="ParkedForkJoinMicroseconds">The same after the workers have gone idle and parked.</param>
/// <param name="JobsPerStep">Fork-joins that one decode step shared with the workers.</param>
/// <param name="ForkJoinMsPerStep">What those cost the decoding thread per step, measured in the steps: publishing, waking, waiting at the joins.</param>
/// <param name="StepMs">One whole decode step at a 1K context (forward pass and greedy choice).</param>
/// <param name="BatchRows">Rows of the batched products timed in <paramref name="BatchMatMulMs"/>.</param>
/// <param name="BatchMatMulMs">The products of one decode step for a batch of rows (one per session).</param>
public sealed record KernelFigures(GemmPath Path, TensorDType WeightType, int Threads, long WeightBytes, double MatMulMs, double SumMs,
    double ForkJoinMicroseconds, double ParkedForkJoinMicroseconds, double JobsPerStep, double ForkJoinMsPerStep, double StepMs, int BatchRows, double BatchMatMulMs)
{
    /// <summary>Multiply-adds of the batched products, as GFLOP/s (two flops each).</summary>
    public double BatchGflops => 2.0 * BatchRows * (WeightBytes / WeightType.ElementSize()) / BatchMatMulMs / 1e6;

    public double MatMulGBps => WeightBytes / MatMulMs / 1e6;
    public double SumGBps => WeightBytes / SumMs / 1e6;
}

/// <summary>
/// Times the weight read of a one-row decode step (each product as the forward pass runs it) against a plain parallel sum
/// over the same bytes in the same process, and what the kernel pool's fork-joins cost a step.
/// </summary>
public static class KernelBench
{
    /// <summary>The figures; <paramref name="cancellation"/> stops the measurement between its stages.</summary>
    public static KernelFigures Measure(TauModel model, KernelPool pool, int repeats, CancellationToken cancellation = default)
    {
        var matrices = model.Packed.All.ToArray();
        long bytes = matrices.Sum(m => m.Bytes);
        var x = TestVector(matrices.Max(m => m.In));
        var y = new float[matrices.Max(m => m.Out)];
        var work = new MatMulWork(pool);
        var sum = new SumWork(matrices);
        // Alternated, so that whatever else the machine runs meanwhile weighs on both alike.
        var (matMul, plain) = MedianPair(repeats, () => { foreach (var m in matrices) work.Run(m, x, y, 1); }, () => pool.For(sum.Chunks, sum));

        cancellation.ThrowIfCancellationRequested();
        const int batch = 64;
        var xs = TestVector(batch * matrices.Max(m => m.In));
        var ys = new float[batch * matrices.Max(m => m.Out)];
        double batched = Median(Math.Max(3, repeats / 8), () => { foreach (var m in matrices) work.Run(m, xs, ys, batch); });

        cancellation.ThrowIfCancellationRequested();
        var empty = new EmptyWork();
        const int forks = 2000;
        double forkJoin = Median(5, () => { for (int i = 0; i < forks; i++) pool.For(pool.Workers + 1, empty); }) * 1000 / forks;
        double parked = Median(20, () => pool.For(pool.Workers + 1, empty), before: () => Thread.Sleep(5)) * 1000;

        cancellation.ThrowIfCancellationRequested();
        const int context = 1024;
        var variant = model.Variant(model.Config.Attention, context + repeats + 16);
        var session = new InferenceSession(variant, pool: pool);
        session.FillSynthetic(context - 1, seed: 1);
        var logits = session.Append(1);
        for (int i = 0; i < 4; i++) logits = session.Append(Sampler.ArgMax(logits));
        long jobs = pool.Jobs, overhead = pool.ForkJoinTicks;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            logits = session.Append(Sampler.ArgMax(logits));
        }
        double step = clock.Elapsed.TotalMilliseconds / repeats;
        return new KernelFigures(GemmKernels.Best, model.Weights.WeightType, pool.Workers + 1, bytes, matMul, plain, forkJoin, parked, (double)(pool.Jobs - jobs) / repeats,
            (pool.ForkJoinTicks - overhead) * 1000.0 / Stopwatch.Frequency / repeats, step,
            batch, batched);
    }

    private static float[] TestVector(int length)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = MathF.Sin(i);
        return x;
    }

    private static (double First, double Second) MedianPair(int repeats, Action first, Action second)
    {
        var times = (new double[repeats], new double[repeats]);
        first();
        second();
        for (int r = 0; r < repeats; r++)
        {
            long start = Stopwatch.GetTimestamp();
            first();
            long middle = Stopwatch.GetTimestamp();
            second();
            times.Item1[r] = Stopwatch.GetElapsedTime(start, middle).TotalMilliseconds;
            times.Item2[r] = Stopwatch.GetElapsedTime(middle).TotalMilliseconds;
        }
        Array.Sort(times.Item1);
        Array.Sort(times.Item2);
        return (times.Item1[repeats / 2], times.Item2[repeats / 2]);
    }

    /// <summary>The median time in ms of <paramref name="body"/> over the repeats, after one warm-up.</summary>
    private static double Median(int repeats, Action body, Action? before = null)
    {
        var times = new double[repeats];
        body();
        for (int r = 0; r < repeats; r++)
        {
            before?.Invoke();
            long start = Stopwatch.GetTimestamp();
            body();
            times[r] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    private sealed class EmptyWork : IChunkedWork
    {
        public void RunChunk(int chunk) { }
    }

    /// <summary>Σ of every packed weight, in 256 KB pieces: the bandwidth a read of those bytes gets on these cores.</summary>
    private sealed class SumWork : IChunkedWork
    {
        private const int Piece = 1 << 16;
        private readonly (PackedMatrix Matrix, int Start, int Length)[] pieces;
        private readonly float[] sums;

        public SumWork(PackedMatrix[] matrices)
        {
            pieces = matrices.SelectMany(m => Enumerable.Range(0, (int)((Floats(m) + Piece - 1) / Piece))
                .Select(i => (m, i * Piece, (int)Math.Min(Piece, Floats(m) - (long)i * Piece)))).ToArray();
            sums = new float[pieces.Length];
        }

        public int Chunks => pieces.Length;

        public void RunChunk(int chunk)
        {
            var (matrix, start, length) = pieces[chunk];
            sums[chunk] = TensorPrimitives.Sum(MemoryMarshal.Cast<byte, float>(matrix.PanelBytes).Slice(start, length));
        }

        // The weight's bytes read as floats, whatever its type: a sum only has to touch every byte once.
        private static long Floats(PackedMatrix m) => m.Bytes / sizeof(float);
    }
}
