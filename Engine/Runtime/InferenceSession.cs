using System.Runtime.InteropServices;

namespace TauCluster.Engine;

/// <summary>
/// One conversation on one model: its tokens, its attention cache and its working buffers.
/// Prefill runs in blocks (chunked prefill); a decode step is a block of one token and allocates nothing
/// once <see cref="Reserve"/> has made room. Not thread-safe: one caller at a time, as a grain gives. A session on a
/// device (<see cref="DeviceModel"/>) keeps its cache there and runs the same pass in the device's kernels.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    /// <summary>Longest block of prompt tokens run through the model at once; bounds the buffers.</summary>
    public const int PrefillBlock = 256;

    /// <summary>The CPU's pass, for a session on the CPU; null on a device, whose passes are the device model's.</summary>
    private readonly ForwardBuffers? buffers;
    private readonly float[]? deviceLogits;
    private readonly List<int> tokens = [];
    private bool hasLogits;

    public InferenceSession(TauModel model, TaumodeSpec? domain = null, KernelPool? pool = null, TauAttentionPath tauPath = TauAttentionPath.Index,
        DeviceModel? device = null)
    {
        Model = model;
        if (domain is not null && model.Config.Attention != AttentionKind.Tau)
            throw new InvalidOptionsException("a domain only applies to tau attention; this model uses causal dot-product attention");
        domain?.RequireFor(model.Config);
        if (device is not null && device.Model != model) throw new ArgumentException("the device holds another model", nameof(device));
        Domain = domain ?? model.DefaultDomain;
        Device = device;
        if (device is null)
        {
            Cache = AttentionCache.Create(model.Config, Domain, tauPath);
            buffers = new ForwardBuffers(model, pool ?? KernelPool.Shared);
        }
        else
        {
            Cache = device.CreateCache(Domain, tauPath);
            deviceLogits = new float[model.Config.VocabSize];
        }
    }

    private InferenceSession(InferenceSession source, int length)
    {
        Model = source.Model;
        Domain = source.Domain;
        Device = source.Device;
        Cache = source.Cache.CopyPrefix(length);
        tokens.AddRange(source.tokens.Take(Cache.Length));
        if (source.buffers is not null) buffers = new ForwardBuffers(Model, source.buffers.Pool);
        else deviceLogits = new float[Model.Config.VocabSize];
    }

    /// <summary>
    /// An independent session holding this one's first <paramref name="length"/> tokens, their cache copied rather
    /// than recomputed (prefix sharing for forks). Feed it the remaining tokens to get logits again.
    /// </summary>
    public InferenceSession CopyPrefix(int length) => new(this, Math.Clamp(length, 0, Length));

    public TauModel Model { get; }
    /// <summary>The device that holds this session's cache and runs its passes; null for the CPU.</summary>
    public DeviceModel? Device { get; }
    public TaumodeSpec? Domain { get; }
    public AttentionCache Cache { get; }
    public IReadOnlyList<int> Tokens => tokens;

    /// <summary>Whether some of this session's positions are held by context shards (<see cref="IndexedTauCache.External"/>).</summary>
    public bool HasExternalContext => Cache is IndexedTauCache { ExternalLength: > 0 };
    public int Length => tokens.Count;

    /// <summary>The logits after the last token appended; none after a truncation or a prefix copy.</summary>
    public ReadOnlySpan<float> Logits => hasLogits
        ? (deviceLogits ?? buffers!.Logits).AsSpan(0, Model.Config.VocabSize)
        : throw new InvalidOptionsException("no logits: append a token first");

    /// <summary>Makes room for a session of <paramref name="totalTokens"/> tokens so later steps allocate nothing.</summary>
    public void Reserve(int totalTokens)
    {
        totalTokens = Math.Min(totalTokens, Model.Config.SequenceLen);
        Cache.Reserve(totalTokens);
        if (tokens.Capacity < totalTokens) tokens.Capacity = totalTokens;
        buffers?.EnsureCapacity(1);
    }

    /// <summary>Runs new tokens through the model and returns the logits after the last one.</summary>
    public ReadOnlySpan<float> Append(scoped ReadOnlySpan<int> newTokens)
    {
        Validate(newTokens);
        for (int offset = 0; offset < newTokens.Length; offset += PrefillBlock)
        {
            var block = newTokens.Slice(offset, Math.Min(PrefillBlock, newTokens.Length - offset));
            if (Device is null) Model.Forward(block, [new Lane(Cache, block.Length)], buffers!, everyRow: false);
            else Device.RunAlone(block, new Lane(Cache, block.Length), everyRow: false, deviceLogits);
            foreach (int t in block) tokens.Add(t);
        }
        hasLogits = true;
        return Logits;
    }

    /// <summary>One decode step.</summary>
    public ReadOnlySpan<float> Append(int token) => Append([token]);

    /// <summary>Runs new tokens and returns the logits of every one of them, [T, vocab] (for checks and scoring).</summary>
    public float[] AppendAllLogits(ReadOnlySpan<int> newTokens)
    {
        Validate(newTokens);
        int vocab = Model.Config.VocabSize;
        var all = new float[(long)newTokens.Length * vocab];
        for (int offset = 0; offset < newTokens.Length; offset += PrefillBlock)
        {
            var block = newTokens.Slice(offset, Math.Min(PrefillBlock, newTokens.Length - offset));
            ForwardEveryRow(block, all.AsSpan(offset * vocab, block.Length * vocab));
        }
        hasLogits = false;   // the buffer holds a block's rows, not one row of the last token
        return all;
    }

    /// <summary>
    /// <see cref="Append(ReadOnlySpan{int})"/> that also scores each new token against the logits before it: the row of
    /// the token ahead of it, and for the first the session's current logits (none, a null, when the session is empty
    /// or was cut). A prompt's log-probabilities from its own prefill; the logits after the last token stay, to sample.
    /// </summary>
    public TokenScore?[] AppendScored(ReadOnlySpan<int> newTokens, int top)
    {
        Validate(newTokens);
        var scores = new TokenScore?[newTokens.Length];
        if (hasLogits) scores[0] = TokenScore.Of(Logits, newTokens[0], top);
        int vocab = Model.Config.VocabSize;
        var rows = new float[Math.Min(PrefillBlock, newTokens.Length) * vocab];
        int last = 0;
        for (int offset = 0; offset < newTokens.Length; offset += PrefillBlock)
        {
            var block = newTokens.Slice(offset, Math.Min(PrefillBlock, newTokens.Length - offset));
            ForwardEveryRow(block, rows.AsSpan(0, block.Length * vocab));
            for (int r = 0; r < block.Length && offset + r + 1 < newTokens.Length; r++)
                scores[offset + r + 1] = TokenScore.Of(rows.AsSpan(r * vocab, vocab), newTokens[offset + r + 1], top);
            last = block.Length - 1;
        }
        buffers?.EnsureCapacity(1);
        rows.AsSpan(last * vocab, vocab).CopyTo(deviceLogits ?? buffers!.Logits);
        hasLogits = true;
        return scores;
    }

    /// <summary>One block through the model with the logits of every row written to <paramref name="rows"/>.</summary>
    private void ForwardEveryRow(ReadOnlySpan<int> block, Span<float> rows)
    {
        if (Device is null)
        {
            Model.Forward(block, [new Lane(Cache, block.Length)], buffers!, everyRow: true);
            buffers!.Logits.AsSpan(0, rows.Length).CopyTo(rows);
        }
        else Device.RunAlone(block, new Lane(Cache, block.Length), everyRow: true, rows);
        foreach (int t in block) tokens.Add(t);
    }

    /// <summary>
    /// Fills the cache with <paramref name="count"/> synthetic positions: random RMS-normalised keys (their λ computed
    /// as usual) and random values in every layer and kv head. Decode cost depends only on how much is cached, so
    /// benchmarks use this to reach long contexts without a quadratic prefill; the logits are not a model's.
    /// </summary>
    public void FillSynthetic(int count, ulong seed)
    {
        var c = Model.Config;
        if (Length + count > c.SequenceLen) throw new ContextLengthExceededException(Length + count, c.SequenceLen);
        var rng = new Xoshiro256(seed);
        var key = new float[c.HeadDim];
        var value = new float[c.HeadDim];
        for (int t = 0; t < count; t++)
        {
            for (int layer = 0; layer < c.NLayer; layer++)
                for (int h = 0; h < c.NKvHead; h++)
                {
                    for (int i = 0; i < key.Length; i++) (key[i], value[i]) = ((float)rng.NextGaussian(), (float)rng.NextGaussian());
                    Kernels.RmsNorm(key, key);
                    Cache.Append(layer, h, key, value);
                }
            Cache.Commit(1);
            tokens.Add(0);
        }
        Cache.Settle();
        hasLogits = false;
    }

    /// <summary>
    /// Forgets everything after the first <paramref name="length"/> tokens. A cut inside positions held by context
    /// shards drops the shard it falls in, and what that shard held before the cut is computed again.
    /// </summary>
    public void Truncate(int length)
    {
        hasLogits = false;
        if (length >= tokens.Count && length >= Cache.Length) return;
        length = Math.Min(length, tokens.Count);
        tokens.RemoveRange(length, tokens.Count - length);
        Cache.Truncate(length);
        if (Cache.Length < length)
        {
            int[] recompute = tokens.GetRange(Cache.Length, length - Cache.Length).ToArray();   // only what the cut shard held before the cut
            tokens.RemoveRange(Cache.Length, recompute.Length);
            Append(recompute);
            hasLogits = false;
        }
    }

    /// <summary>This session's step through a <see cref="ComputeWorker"/>, made on its first step there and reused.</summary>
    internal SessionStep? WorkerStep { get; set; }

    /// <summary>The lane a worker's pass runs <paramref name="rows"/> of this session's new tokens in.</summary>
    internal Lane Lane(int rows) => new(Cache, rows);

    /// <summary>Takes in a block of tokens that a worker's pass ran through the model, with the logits of its last row.</summary>
    internal void AcceptBlock(ReadOnlySpan<int> block, ReadOnlySpan<float> logits)
    {
        buffers?.EnsureCapacity(1);
        logits.CopyTo(deviceLogits ?? buffers!.Logits);
        foreach (int t in block) tokens.Add(t);
        hasLogits = true;
    }

    /// <summary>
    /// On a device, rents the cache pages that <paramref name="newTokens"/> more tokens need before a worker's pass runs
    /// them, so that a full device fails this request alone (a typed error), not the pass it would have joined.
    /// </summary>
    internal void ReserveAhead(int newTokens)
    {
        if (Cache is DeviceCache onDevice) onDevice.EnsurePages(Length + newTokens);
    }

    /// <summary>One token's check, for callers (async ones) where a collection expression would be an array.</summary>
    internal void Validate(int token) => Validate(MemoryMarshal.CreateReadOnlySpan(ref token, 1));

    /// <summary>Refuses ids outside the vocabulary and growth past sequence_len, before anything changes.</summary>
    internal void Validate(ReadOnlySpan<int> newTokens)
    {
        var c = Model.Config;
        if (newTokens.IsEmpty) throw new InvalidOptionsException("no tokens to append");
        foreach (int t in newTokens)
            if ((uint)t >= (uint)c.VocabSize) throw new TokenOutOfRangeException(t, c.VocabSize);
        if (tokens.Count + newTokens.Length > c.SequenceLen)
            throw new ContextLengthExceededException(tokens.Count + newTokens.Length, c.SequenceLen);
    }

    /// <summary>Gives a device session's cache memory back to its device at once (a CPU session's goes with the GC).</summary>
    public void Dispose() => (Cache as DeviceCache)?.Release();
}
