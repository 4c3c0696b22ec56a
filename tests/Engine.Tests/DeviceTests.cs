using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace TauCluster.Engine.Tests;

/// <summary>
/// The ILGPU kernels against the SIMD engine, on ILGPU's CPU accelerator (the kernels a GPU runs, so that they run in
/// CI): each kernel on its own, and whole forward passes (tau in every τ mode, causal, GQA, the real manifold, prefill,
/// decode, batched) with logits within 1e-4 and greedy tokens equal.
/// </summary>
public sealed class DeviceTests
{
    private const float Tolerance = 1e-4f;

    /// <summary>
    /// The device the tests run on: ILGPU's CPU accelerator, or what TAU_TEST_DEVICE names (benchmarks/gpu/run.sh runs
    /// this class on cuda).
    /// </summary>
    private static ComputeDevice TestDevice { get; } = ComputeDevice.Parse(Environment.GetEnvironmentVariable("TAU_TEST_DEVICE") is { Length: > 0 } d ? d : "ilgpu-cpu");

    /// <summary>One accelerator for the class, as a silo has one.</summary>
    private static readonly Lazy<ComputeWorkers> Accelerated = new(() => new ComputeWorkers(maxBatch: 8, device: TestDevice));

    private static ComputeWorkers OnDevice => Accelerated.Value;

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        float diff = TestSupport.MaxAbsDiff(expected, actual);
        Assert.True(diff <= Tolerance, $"{what}: the device differs from the SIMD engine by {diff}");
    }

    public static TheoryData<AttentionKind, int, int, TaumodeKind, double> Shapes() => new()
    {
        { AttentionKind.Tau, 2, 2, TaumodeKind.Median, 1.0 },
        { AttentionKind.Tau, 4, 2, TaumodeKind.Fixed, 0.05 },
        { AttentionKind.Tau, 4, 1, TaumodeKind.Mean, 0.2 },
        { AttentionKind.Tau, 2, 1, TaumodeKind.Percentile, 0.5 },
        { AttentionKind.Causal, 2, 2, TaumodeKind.Median, 1.0 },
        { AttentionKind.Causal, 4, 1, TaumodeKind.Median, 1.0 },
    };

    private static TauModel Model(AttentionKind attention, int heads, int kvHeads, TaumodeKind mode = TaumodeKind.Median, double temperature = 1.0, double softcap = 15) =>
        TauModel.CreateRandom(TestSupport.SmallConfig(attention, heads, kvHeads, mode: mode, temperature: temperature, softcap: softcap) with
        {
            Taumode = new TaumodeConfig(Mode: mode, Tau: 0.7, Temperature: temperature, Percentile: 0.8),
        }, (ulong)(heads * 10 + kvHeads));

    [Fact]
    public void Lambda_before_rope_on_the_device_gives_the_SIMD_logits_and_a_recency_bias_is_refused_there()
    {
        var model = Model(AttentionKind.Tau, 4, 2);
        var before = TauModel.CreateRandom(model.Config with { Taumode = model.Config.Taumode! with { LambdaBeforeRope = true } }, 5);
        var tokens = TestSupport.RandomTokens(40, before.Config.VocabSize, 4);
        using (var device = OnDevice.NewSession(before))
            AssertClose(new InferenceSession(before).AppendAllLogits(tokens), device.AppendAllLogits(tokens), "λ before RoPE");
        var recency = TauModel.CreateRandom(model.Config with { Taumode = model.Config.Taumode! with { Recency = TauRecency.Alibi } }, 5);
        var refused = Assert.Throws<InvalidOptionsException>(() => OnDevice.NewSession(recency));
        Assert.Contains("taumode.recency", refused.Message);
        var learned = TauModel.CreateRandom(model.Config with { Taumode = model.Config.Taumode! with { LearnedTemperature = true } }, 5);
        Assert.Contains("taumode.learned_temperature", Assert.Throws<InvalidOptionsException>(() => OnDevice.NewSession(learned)).Message);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void A_prefill_on_the_device_gives_the_SIMD_logits_of_every_row(AttentionKind attention, int heads, int kvHeads, TaumodeKind mode, double temperature)
    {
        var model = Model(attention, heads, kvHeads, mode, temperature);
        // Past two cache pages, so a row reads keys from three.
        var tokens = TestSupport.RandomTokens(DevicePagePool.PageTokens + 21, model.Config.VocabSize, 3);
        var cpu = new InferenceSession(model).AppendAllLogits(tokens);
        using var device = OnDevice.NewSession(model);
        AssertClose(cpu, device.AppendAllLogits(tokens), $"{attention} {heads}/{kvHeads} heads, τ {mode}");
        Assert.Equal(tokens.Length, device.Cache.Length);
    }

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Greedy_decoding_on_the_device_gives_the_SIMD_tokens(AttentionKind attention)
    {
        var model = Model(attention, 4, 2, softcap: 0);
        var prompt = TestSupport.RandomTokens(9, model.Config.VocabSize, 5);
        var (expected, expectedLogits) = TestSupport.DecodeAlone(model, TauAttentionPath.Dense, prompt, SamplingOptions.Greedy, 30);

        using var device = OnDevice.NewSession(model);
        var (tokens, logits) = TestSupport.DecodeAlone(device, prompt, SamplingOptions.Greedy, expected.Length);
        Assert.Equal(expected, tokens);
        AssertClose(expectedLogits, logits, "the last step's logits");
    }

    [SkippableFact]
    public void A_model_on_the_real_manifold_runs_on_the_device_as_on_the_CPU()
    {
        var manifold = TestSupport.RealManifold();
        var config = TestSupport.SmallConfig(AttentionKind.Tau, 1, 1, embd: 384, layers: 1, vocab: 40, mode: null, temperature: 1e-3);
        var model = TauModel.CreateRandom(config, 5, manifold);
        var tokens = TestSupport.RandomTokens(10, config.VocabSize, 8);
        var cpu = new InferenceSession(model).AppendAllLogits(tokens);
        using var device = OnDevice.NewSession(model);
        AssertClose(cpu, device.AppendAllLogits(tokens), "cve-minilm-384");
    }

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public async Task Sessions_batched_by_a_device_worker_generate_the_tokens_each_makes_alone(AttentionKind attention)
    {
        var model = Model(attention, 2, 1);
        const int sessions = 5, count = 12;
        var sampling = Enumerable.Range(0, sessions).Select(i => new SamplingOptions(0.8, 20, 0.95, 100 + (ulong)i)).ToArray();
        var prompts = Enumerable.Range(0, sessions).Select(i => TestSupport.RandomTokens(4 + 9 * i, model.Config.VocabSize, (ulong)i)).ToArray();
        var expected = Enumerable.Range(0, sessions).Select(i => TestSupport.DecodeAlone(model, TauAttentionPath.Dense, prompts[i], sampling[i], count).Tokens).ToArray();

        var worker = OnDevice.For(model);
        long passesBefore = worker.Batches;
        var results = await Task.WhenAll(Enumerable.Range(0, sessions).Select(i => Task.Run(async () =>
        {
            using var session = OnDevice.NewSession(model);
            var run = worker.Generate(session, prompts[i], new Sampler(model.Config.VocabSize, sampling[i]), count);
            var tokens = new int[count];
            for (int t = 0; t < count; t++) tokens[t] = await run.Next();
            Assert.True(await run.Stop());
            return tokens;
        })));
        for (int i = 0; i < sessions; i++) Assert.Equal(expected[i], results[i]);
        Assert.True(worker.Batches - passesBefore < sessions * count, "the sessions never shared a pass");
    }

    [Fact]
    public void A_fork_on_the_device_continues_as_its_parent_would_and_leaves_it_alone()
    {
        var model = Model(AttentionKind.Tau, 2, 2);
        var prompt = TestSupport.RandomTokens(DevicePagePool.PageTokens + 10, model.Config.VocabSize, 1);
        using var parent = OnDevice.NewSession(model);
        var parentLogits = parent.Append(prompt).ToArray();
        using var child = parent.CopyPrefix(parent.Length - 1);
        Assert.Equal(parentLogits, child.Append(prompt[^1]).ToArray());   // the copy is the same cache, so the same numbers

        var childNext = child.Append(5).ToArray();
        var parentNext = parent.Append(6).ToArray();
        using var fresh = OnDevice.NewSession(model);
        fresh.Append(prompt);
        Assert.Equal(fresh.Append(6).ToArray(), parentNext);
        Assert.NotEqual(parentNext, childNext);
    }

    [Fact]
    public void A_truncated_device_session_gives_back_its_pages_and_computes_the_cut_tokens_again()
    {
        var model = Model(AttentionKind.Causal, 2, 2);
        var tokens = TestSupport.RandomTokens(3 * DevicePagePool.PageTokens, model.Config.VocabSize, 2);
        var deviceModel = OnDevice.DeviceModelOf(model)!;
        using var session = OnDevice.NewSession(model);
        var all = session.AppendAllLogits(tokens);
        var cache = (DeviceCache)session.Cache;
        Assert.Equal(3 * deviceModel.Pages.PageBytes, cache.DeviceBytes);

        session.Truncate(DevicePagePool.PageTokens + 1);
        Assert.Equal(2 * deviceModel.Pages.PageBytes, cache.DeviceBytes);
        int vocab = model.Config.VocabSize;
        var again = session.Append(tokens.AsSpan(DevicePagePool.PageTokens + 1, 5));
        Assert.Equal(all.AsSpan((DevicePagePool.PageTokens + 5) * vocab, vocab).ToArray(), again.ToArray());
    }

    /// <summary>Past <see cref="DeviceKernels.KeyTile"/> keys, attention runs its online softmax over several tiles.</summary>
    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void A_long_synthetic_context_on_the_device_attends_as_on_the_CPU(AttentionKind attention)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 4, 2, sequenceLen: 4096), 31);
        const int positions = 2 * DeviceKernels.KeyTile + 77;
        var cpu = new InferenceSession(model, tauPath: TauAttentionPath.Dense);
        cpu.FillSynthetic(positions, seed: 9);
        using var device = OnDevice.NewSession(model);
        device.FillSynthetic(positions, seed: 9);
        AssertClose(cpu.Append([1, 2, 3]), device.Append([1, 2, 3]), $"a step after {positions} synthetic positions");
    }

    /// <summary>
    /// Past a sealed segment, tau attends through the device's λ index: it equals the dense softmax up to rounding, at
    /// temperatures from 1 to 10⁻³ (where almost every weight underflows against the nearest key's).
    /// </summary>
    [Theory]
    [InlineData(1.0)]
    [InlineData(0.05)]
    [InlineData(0.001)]
    public void The_device_lambda_index_equals_the_dense_softmax(double temperature)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 4, 2, temperature: temperature, sequenceLen: 4096), 33);
        const int positions = 2 * DeviceLambdaIndex.SegmentSize + 300;
        var cpu = new InferenceSession(model, tauPath: TauAttentionPath.Dense);
        cpu.FillSynthetic(positions, seed: 4);
        using var dense = OnDevice.NewSession(model, path: TauAttentionPath.Dense);
        dense.FillSynthetic(positions, seed: 4);
        using var indexed = OnDevice.NewSession(model);
        indexed.FillSynthetic(positions, seed: 4);
        int[] next = [7, 8, 9];
        var expected = cpu.Append(next).ToArray();
        AssertClose(expected, dense.Append(next), "dense on the device");
        AssertClose(expected, indexed.Append(next), "through the λ index");
        Assert.Equal(2, ((DeviceCache)indexed.Cache).SegmentIds.Count);
        Assert.Empty(((DeviceCache)dense.Cache).SegmentIds);
    }

    [Fact]
    public void A_prompt_past_a_segment_seals_it_and_decodes_the_tokens_of_the_CPU()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, sequenceLen: 2048, softcap: 0), 35);
        var prompt = TestSupport.RandomTokens(DeviceLambdaIndex.SegmentSize + 9, model.Config.VocabSize, 6);
        var (expected, expectedLogits) = TestSupport.DecodeAlone(model, TauAttentionPath.Dense, prompt, SamplingOptions.Greedy, 6);
        using var session = OnDevice.NewSession(model);
        var (tokens, logits) = TestSupport.DecodeAlone(session, prompt, SamplingOptions.Greedy, expected.Length);
        Assert.Equal(expected, tokens);
        AssertClose(expectedLogits, logits, "after the seal");
        var cache = (DeviceCache)session.Cache;
        Assert.Single(cache.SegmentIds);

        // A fork copies the sealed index; a cut below the seal drops it and the tokens after it are computed again.
        using var fork = session.CopyPrefix(session.Length - 1);
        Assert.Single(((DeviceCache)fork.Cache).SegmentIds);
        Assert.Equal(logits, fork.Append(tokens[^1]).ToArray());
        long before = cache.DeviceBytes;
        session.Truncate(DeviceLambdaIndex.SegmentSize - 5);
        Assert.Empty(cache.SegmentIds);
        Assert.True(cache.DeviceBytes < before);
        var again = session.Append(prompt.AsSpan(DeviceLambdaIndex.SegmentSize - 5, 14));
        var cpu = new InferenceSession(model, tauPath: TauAttentionPath.Dense);
        AssertClose(cpu.Append(prompt.AsSpan(0, DeviceLambdaIndex.SegmentSize + 9)), again, "after the cut and the same tokens again");
    }

    [Fact]
    public void Wider_groups_and_tiles_give_the_same_logits()
    {
        var model = Model(AttentionKind.Tau, 4, 2);
        var tokens = TestSupport.RandomTokens(2 * DevicePagePool.PageTokens + 3, model.Config.VocabSize, 12);
        var cpu = new InferenceSession(model).AppendAllLogits(tokens);
        using var wide = new ComputeWorkers(device: TestDevice);
        // What a GPU launches, narrowed to what ILGPU's CPU threads run in reasonable time: groups of 8, tiles of 4 × 4.
        wide.Accelerator!.GroupSize = 8;
        wide.Accelerator.Tile = 4;
        using var session = wide.NewSession(model);
        AssertClose(cpu, session.AppendAllLogits(tokens), "groups of 8 and tiles of 4");
    }

    [Fact]
    public async Task A_full_device_refuses_the_session_that_needs_more_and_serves_again_once_pages_come_back()
    {
        var model = Model(AttentionKind.Tau, 2, 2);
        var c = model.Config;
        long pageBytes = (long)DevicePagePool.PageTokens * c.NLayer * c.NKvHead * (1 + c.HeadDim) * sizeof(float);
        using var small = new ComputeWorkers(device: TestDevice, deviceCacheBytes: 3 * pageBytes);
        var worker = small.For(model);
        var first = small.NewSession(model);
        first.Append(TestSupport.RandomTokens(2 * DevicePagePool.PageTokens, c.VocabSize, 1));

        using var second = small.NewSession(model);
        var prompt = TestSupport.RandomTokens(DevicePagePool.PageTokens + 1, c.VocabSize, 2);
        var refused = await Assert.ThrowsAsync<DeviceMemoryExhaustedException>(async () => await worker.Prefill(second, prompt, null));
        Assert.Contains("3 pages", refused.Message);
        Assert.Equal(0, second.Length);
        Assert.Equal(0, ((DeviceCache)second.Cache).DeviceBytes);   // what it had rented before the pool ran out went back

        first.Dispose();
        Assert.Equal(-1, await worker.Prefill(second, prompt, null));
        Assert.Equal(prompt.Length, second.Length);
    }

    [Theory]
    [InlineData("cpu", DeviceKind.Cpu, 0)]
    [InlineData("CUDA", DeviceKind.Cuda, 0)]
    [InlineData("cuda:3", DeviceKind.Cuda, 3)]
    [InlineData("ilgpu-cpu", DeviceKind.IlgpuCpu, 0)]
    public void Device_names_are_read_as_Tau_Device_spells_them(string name, DeviceKind kind, int index) =>
        Assert.Equal(new ComputeDevice(kind, index), ComputeDevice.Parse(name));

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    public void An_unknown_device_name_is_an_error_listing_the_names(string name)
    {
        var error = Assert.Throws<InvalidOptionsException>(() => ComputeDevice.Parse(name));
        Assert.Contains("cpu, cuda, cuda:N or ilgpu-cpu", error.Message);
    }

    [Fact]
    public void A_configured_GPU_that_is_not_there_is_an_error_at_start_not_a_fall_back()
    {
        var error = Assert.Throws<InvalidOptionsException>(() => new ComputeWorkers(device: new ComputeDevice(DeviceKind.Cuda, 99)));
        Assert.StartsWith("device cuda:99:", error.Message);
    }

    /// <summary>
    /// ILGPU's CPU accelerator runs the kernels' .NET code; a GPU runs the PTX that ILGPU's CUDA backend makes of it, which
    /// needs no GPU to make. So every kernel is compiled here for Hopper (sm_90, the H200's), as a GPU silo would at start:
    /// what its PTX backend cannot compile fails here, not on the GPU.
    /// </summary>
    [Fact]
    public void Every_kernel_compiles_to_PTX_for_Hopper()
    {
        using var context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new ILGPU.Backends.PTX.PTXBackend(context, ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_80, null!);
        foreach (var kernel in DeviceKernels.EntryPoints)
        {
            var entry = ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
            var compiled = (ILGPU.Backends.PTX.PTXCompiledKernel)backend.Compile(entry, default);
            // ILGPU writes the newest target its PTX version names (sm_80 for 8.0); the driver compiles it on for sm_90.
            Assert.Contains(".target sm_", compiled.PTXAssembly);
            Assert.Contains($".entry Kernel_{kernel.Name}", compiled.PTXAssembly);
        }
    }

    // The kernels one at a time, on inputs of their own.

    [Theory]
    [InlineData(0, 0.0)]
    [InlineData(1, 0.0)]
    [InlineData(2, 0.0)]
    [InlineData(3, 0.0)]
    [InlineData(3, 15.0)]
    public void The_product_kernel_computes_W_times_x_with_its_epilogue(int epilogueKind, double softcap)
    {
        var epilogue = (Epilogue)epilogueKind;   // none, clamp(±5), relu², the logits'
        const int rows = 5, inputs = 37, outputs = 23;
        var w = TestSupport.RandomVector(outputs * inputs, 1, rmsNormalise: false).Select(v => v * 4).ToArray();
        var x = TestSupport.RandomVector(rows * inputs, 2, rmsNormalise: false).Select(v => v * 4).ToArray();
        var expected = new float[rows * outputs];
        for (int t = 0; t < rows; t++)
            for (int o = 0; o < outputs; o++)
            {
                double sum = 0;
                for (int k = 0; k < inputs; k++) sum += w[o * inputs + k] * x[t * inputs + k];
                expected[t * outputs + o] = (float)sum;
            }
        var span = expected.AsSpan();
        switch (epilogue)
        {
            case Epilogue.ClampQkv: Kernels.Clamp(span, -Kernels.QkvLimit, Kernels.QkvLimit); break;
            case Epilogue.ReluSquared: Kernels.ReluSquared<float>(span, span); break;
            case Epilogue.Logits:
                Kernels.Clamp(span, -Kernels.LogitLimit, Kernels.LogitLimit);
                if (softcap > 0)
                {
                    Kernels.Softcap<float>(span, (float)softcap, span);
                    Kernels.Clamp(span, -Kernels.LogitLimit, Kernels.LogitLimit);
                }
                break;
        }

        var device = OnDevice.Accelerator!;
        using var wBuffer = device.Accelerator.Allocate1D(w);
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var yBuffer = device.Accelerator.Allocate1D<float>(rows * outputs);
        // Tiles of 4 × 4 in three groups: wider than a pass uses here, so that the tiles' shared slices and their
        // edges (23 and 37 are not multiples of 4) are exercised, and each group strides over several tiles.
        const int tile = 4;
        device.Kernels.Product(new KernelConfig(new Index2D(3, 1), new Index2D(tile, tile)),
            wBuffer.View, xBuffer.View, yBuffer.View,
            new ProductShape { Rows = rows, In = inputs, Out = outputs, Epilogue = (int)epilogue, Softcap = (float)softcap });
        // Relative: relu² of sums of 37 products of fours reaches 10⁴, where a float's last bit is 10⁻³.
        var actual = yBuffer.GetAsArray1D();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance * Math.Max(1, Math.Abs(expected[i])),
                $"the product with {epilogue}: output {i} is {actual[i]}, expected {expected[i]}");
    }

    [Fact]
    public void The_rms_kernel_normalises_the_rows_it_is_given()
    {
        const int rows = 4, width = 45;
        var x = TestSupport.RandomVector(rows * width, 3, rmsNormalise: false);
        int[] rowOf = [2, 0, 3];
        var expected = new float[rowOf.Length * width];
        for (int r = 0; r < rowOf.Length; r++) Kernels.RmsNorm<float>(x.AsSpan(rowOf[r] * width, width), expected.AsSpan(r * width, width));

        var device = OnDevice.Accelerator!;
        using var xBuffer = device.Accelerator.Allocate1D(x);
        using var rowBuffer = device.Accelerator.Allocate1D(rowOf);
        using var yBuffer = device.Accelerator.Allocate1D<float>(expected.Length);
        // Groups of 8, wider than a pass uses here, in two groups striding over three rows.
        device.Kernels.RmsNormRows(new KernelConfig(2, 8), xBuffer.View, yBuffer.View, rowBuffer.View, width, rowOf.Length);
        AssertClose(expected, yBuffer.GetAsArray1D(), "rms");
    }

    [Theory]
    [InlineData(TaumodeKind.Fixed)]
    [InlineData(TaumodeKind.Median)]
    [InlineData(TaumodeKind.Mean)]
    [InlineData(TaumodeKind.Percentile)]
    public void The_key_kernel_caches_the_lambda_of_each_roped_and_normed_key(TaumodeKind mode)
    {
        var model = Model(AttentionKind.Tau, 2, 2, mode);
        var tokens = TestSupport.RandomTokens(20, model.Config.VocabSize, 4);
        var cpu = new InferenceSession(model, tauPath: TauAttentionPath.Dense);
        cpu.Append(tokens);
        using var device = OnDevice.NewSession(model);
        device.Append(tokens);
        var deviceCache = (DeviceCache)device.Cache;
        var cpuCache = (DenseTauCache)cpu.Cache;
        for (int layer = 0; layer < model.Config.NLayer; layer++)
            for (int h = 0; h < model.Config.NKvHead; h++)
            {
                var (lambdas, values) = deviceCache.Read(layer, h);
                var (cpuLambdas, cpuValues) = cpuCache.Read(layer, h);
                AssertClose(cpuLambdas, lambdas, $"λk of layer {layer}, kv head {h}");
                AssertClose(cpuValues, values, $"v of layer {layer}, kv head {h}");
            }
    }
}
