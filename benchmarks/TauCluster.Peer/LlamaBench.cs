using System.Diagnostics;
using System.Numerics.Tensors;
using LLama;
using LLama.Common;
using LLama.Native;

namespace TauCluster.Peer;

/// <summary>What one run measures, and how llama.cpp is set up for it.</summary>
public sealed record BenchSettings(
    string Gguf, int[] Sequences, int Tokens, int[] Contexts, int Steps, int Threads, int Warmup, bool RunSequences, bool RunDecode, bool KvUnified, bool? FlashAttention, int Repeats = 3)
{
    public const int PromptTokens = 8;      // as `tau bench sessions`: an 8-token prompt per session, not timed
    public const uint BatchSize = 2048;     // n_batch: tokens per llama_decode call when prefilling
    public const uint UBatchSize = 512;     // n_ubatch: tokens per compute graph
    public const uint SeqMax = 64;          // n_seq_max of the batched context
}

/// <summary>One sequence count's aggregate decode rate.</summary>
public sealed record SequenceResult(int Sequences, int Tokens, double Seconds)
{
    public double TokensPerSecond => Sequences * Tokens / Seconds;
}

/// <summary>Decode at one context: the prefill that filled the cache, then the decode steps timed after it.</summary>
public sealed record DecodeResult(int Context, double PrefillSeconds, int Steps, double DecodeSeconds)
{
    public double PrefillTokensPerSecond => Context / PrefillSeconds;
    public double MsPerToken => DecodeSeconds * 1000 / Steps;
}

/// <summary>The model as llama.cpp loaded it, and what its first logits looked like.</summary>
public sealed record LoadCheck(long Parameters, long SizeBytes, int VocabCount, int EmbeddingSize, bool LogitsFinite, float LogitMin, float LogitMax);

/// <summary>
/// Times llama.cpp through LLamaSharp's low-level API: token ids go straight into an <see cref="LLamaBatch"/> (no
/// tokenizer), one <see cref="LLamaContext.Decode(LLamaBatch)"/> per step, greedy choice on the returned logits.
/// </summary>
public sealed class LlamaBench(BenchSettings settings, LLamaWeights weights) : IDisposable
{
    public static LLamaWeights Load(string gguf) => LLamaWeights.LoadFromFile(new ModelParams(gguf) { GpuLayerCount = 0 });

    private ModelParams Context(uint size, uint seqMax) => new(settings.Gguf)
    {
        KVUnified = settings.KvUnified,
        FlashAttention = settings.FlashAttention,
        ContextSize = size,
        BatchSize = BenchSettings.BatchSize,
        UBatchSize = BenchSettings.UBatchSize,
        SeqMax = seqMax,
        Threads = settings.Threads,
        BatchThreads = settings.Threads,
        GpuLayerCount = 0,
    };

    /// <summary>Loads a one-sequence context, decodes the prompt and checks the logits: all finite, not all equal.</summary>
    public LoadCheck Check()
    {
        using var context = weights.CreateContext(Context(256, 1));
        var batch = new LLamaBatch();
        for (int i = 0; i < BenchSettings.PromptTokens; i++) batch.Add(i + 1, i, LLamaSeqId.Zero, i == BenchSettings.PromptTokens - 1);
        Decode(context, batch);
        var logits = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1);
        bool finite = true;
        foreach (float v in logits) finite &= float.IsFinite(v);
        return new LoadCheck(
            (long)weights.ParameterCount, (long)weights.SizeInBytes, weights.Vocab.Count, weights.EmbeddingSize,
            finite && TensorPrimitives.Max(logits) > TensorPrimitives.Min(logits), TensorPrimitives.Min(logits), TensorPrimitives.Max(logits));
    }

    /// <summary>
    /// For each count S: S sequences in one context (n_seq_max 64, each with its own KV stream), each prefilled with
    /// the 8-token prompt, then steps of one llama_decode over a batch holding one token of every sequence.
    /// </summary>
    public IEnumerable<SequenceResult> Sequences(Action<string> progress)
    {
        uint slot = (uint)((BenchSettings.PromptTokens + settings.Warmup + settings.Tokens + 8 + 255) / 256 * 256);
        using var context = weights.CreateContext(Context(slot * BenchSettings.SeqMax, BenchSettings.SeqMax));
        foreach (int count in settings.Sequences)
        {
            if (count > BenchSettings.SeqMax) throw new ArgumentException($"--sequences {count} is more than n_seq_max {BenchSettings.SeqMax}");
            // The median of a few runs: one run of a few hundred milliseconds is at the mercy of a shared machine.
            var runs = Enumerable.Range(0, settings.Repeats).Select(_ => TimeSequences(context, count)).Order().ToArray();
            var result = new SequenceResult(count, settings.Tokens, runs[runs.Length / 2]);
            progress($"{count,3} sequences: {result.TokensPerSecond,8:F1} tokens/s (median of {runs.Length})");
            yield return result;
        }
    }

    private double TimeSequences(LLamaContext context, int count)
    {
        context.NativeHandle.MemoryClear();
        var batch = new LLamaBatch();
        for (int s = 0; s < count; s++)
            for (int i = 0; i < BenchSettings.PromptTokens; i++)
                batch.Add(i + 1, i, (LLamaSeqId)s, i == BenchSettings.PromptTokens - 1);
        Decode(context, batch);
        var next = new int[count];
        for (int s = 0; s < count; s++) next[s] = ArgMax(context, (s + 1) * BenchSettings.PromptTokens - 1);
        int position = BenchSettings.PromptTokens;
        for (int i = 0; i < settings.Warmup; i++) Step(context, batch, next, position++);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < settings.Tokens; i++) Step(context, batch, next, position++);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// For each context C: a fresh one-sequence context, C seeded random tokens prefilled (timed, logits only for the
    /// last), warm-up steps, then <see cref="BenchSettings.Steps"/> timed decode steps at positions C, C+1, ….
    /// </summary>
    public IEnumerable<DecodeResult> Decode(Action<string> progress)
    {
        foreach (int size in settings.Contexts)
        {
            using var context = weights.CreateContext(Context((uint)(size + settings.Warmup + settings.Steps + 256), 1));
            var rng = new Random(size);
            var batch = new LLamaBatch();
            var clock = Stopwatch.StartNew();
            for (int start = 0; start < size; start += (int)BenchSettings.BatchSize)
            {
                batch.Clear();
                int end = Math.Min(size, start + (int)BenchSettings.BatchSize);
                for (int p = start; p < end; p++) batch.Add(rng.Next(3, PeerModel.Vocab), p, LLamaSeqId.Zero, p == size - 1);
                Decode(context, batch);
            }
            double prefill = clock.Elapsed.TotalSeconds;
            var next = new[] { ArgMax(context, batch.TokenCount - 1) };
            int position = size;
            for (int i = 0; i < settings.Warmup; i++) Step(context, batch, next, position++);
            clock.Restart();
            for (int i = 0; i < settings.Steps; i++) Step(context, batch, next, position++);
            var result = new DecodeResult(size, prefill, settings.Steps, clock.Elapsed.TotalSeconds);
            progress($"context {size,7}: prefill {prefill,8:F1} s ({result.PrefillTokensPerSecond,7:F0} tokens/s), decode {result.MsPerToken,8:F3} ms/token");
            yield return result;
        }
    }

    /// <summary>One decode step: one token per sequence at <paramref name="position"/>, each sequence's next token greedy.</summary>
    private static void Step(LLamaContext context, LLamaBatch batch, int[] next, int position)
    {
        batch.Clear();
        for (int s = 0; s < next.Length; s++) batch.Add(next[s], position, (LLamaSeqId)s, true);
        Decode(context, batch);
        for (int s = 0; s < next.Length; s++) next[s] = ArgMax(context, s);
    }

    private static int ArgMax(LLamaContext context, int index) => TensorPrimitives.IndexOfMax(context.NativeHandle.GetLogitsIth(index));

    private static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.Decode(batch);
        if (result != LLama.Native.DecodeResult.Ok)
            throw new InvalidOperationException($"llama_decode failed: {result} ({batch.TokenCount} tokens)");
    }

    public void Dispose() => weights.Dispose();
}
