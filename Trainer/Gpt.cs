using System.Numerics;
using System.Numerics.Tensors;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// The Tauformer GPT of DESIGN.md §1 as a trainable model: <see cref="Forward"/> runs a batch of sequences and returns
/// the mean cross-entropy; <see cref="Backward"/> then fills <see cref="Gradients"/> by hand-written backpropagation.
/// Both read top to bottom like the formulas; the math lives in <see cref="Ops"/>, <see cref="TauLambda"/>,
/// <see cref="Attention"/> and the matrix product <see cref="Gemm"/>.
/// <para>
/// Generic over the number type: <c>Gpt&lt;float&gt;</c> trains, <c>Gpt&lt;double&gt;</c> is the same code in double
/// precision for the gradient checks. Every buffer is allocated once for the largest batch. The work is split across
/// cores by rows, by (sequence, head) and by output tiles, never by summing partial results in whatever order threads
/// finish, so the same inputs give the same bits whatever the thread count.
/// </para>
/// </summary>
public sealed class Gpt<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int RowsPerChunk = 16;

    private readonly ModelConfig config;
    private readonly Laplacian? laplacian;
    private readonly TaumodeSettings taumode;
    private readonly T temperature;
    private readonly ParallelOptions parallel;
    private readonly ParallelOptions? gemmParallel;   // null on one thread: everything runs inline
    private readonly int C, D, H, Hkv, V, Qkv, Mlp, Heads, SeqLen, F;   // F: the dimension λ is taken in (D unless projected)
    private readonly ParameterTensor[] linearLayers;
    private readonly T[] transposed;           // Wᵀ of every linear layer, at the layer's offset: the forward multiplies by these
    private readonly T[] ropeCos, ropeSin;
    private readonly Layer[] layers;
    private readonly T[][] residual;           // residual[l]: x entering layer l; residual[NLayer]: x after the last layer
    private readonly T[] finalNorm, finalInv, logits, logitSlope, probabilities;
    private readonly double[] rowLoss;
    private readonly int[] tokens, targets;
    private readonly T[] dx, dNorm, dQkv, dY, dUp, dLogits, dLambdaQ, dLambdaK, dProjected;
    private int rows;
    private bool forwardDone;

    [ThreadStatic] private static T[]? threadScratch;

    /// <param name="config">The model (vocabulary, shape, attention kind, taumode).</param>
    /// <param name="domain">Tau models: the Laplacian and resolved taumode settings, exactly as the Engine resolves them
    /// (<see cref="TauModel.DefaultDomain"/>); ignored for causal models.</param>
    /// <param name="maxSequences">The largest batch <see cref="Forward"/> will be given.</param>
    /// <param name="sequenceLength">Positions per sequence (at most the config's sequence_len).</param>
    /// <param name="threads">Cores to use; 0 for all.</param>
    public Gpt(ModelConfig config, TaumodeSpec? domain, int maxSequences, int sequenceLength, int threads = 0)
    {
        this.config = config.Validate();
        if (sequenceLength < 1 || sequenceLength > config.SequenceLen)
            throw new InvalidTrainingOptionsException($"sequence length {sequenceLength} must lie in [1, sequence_len = {config.SequenceLen}]");
        if (maxSequences < 1) throw new InvalidTrainingOptionsException($"batch of {maxSequences} sequences must be at least 1");
        if (config.Attention == AttentionKind.Tau)
        {
            domain = domain ?? throw new ArgumentNullException(nameof(domain), "tau attention needs its Laplacian and taumode settings");
            domain.Laplacian.RequireDimension(config.LambdaDim, "this model");
            laplacian = domain.Laplacian;
            taumode = domain.Settings;
            temperature = T.CreateTruncating(domain.Settings.EffectiveTemperature);
        }
        parallel = new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };
        gemmParallel = parallel.MaxDegreeOfParallelism > 1 ? parallel : null;
        (C, D, H, Hkv, V) = (config.NEmbd, config.HeadDim, config.NHead, config.NKvHead, config.VocabSize);
        (Qkv, Mlp, Heads, SeqLen, F) = ((H + 2 * Hkv) * D, config.MlpDim, H + Hkv, sequenceLength, config.LambdaDim);
        MaxSequences = maxSequences;
        int maxRows = checked(maxSequences * sequenceLength);

        Layout = new ParameterLayout(config);
        Parameters = new T[Layout.Count];
        Gradients = new T[Layout.Count];
        transposed = new T[Layout.Count];
        linearLayers = Layout.LinearLayers.ToArray();
        (ropeCos, ropeSin) = Ops.RopeTables<T>(sequenceLength, D, config.RopeBase);
        layers = Enumerable.Range(0, config.NLayer).Select(_ => new Layer(this, maxSequences, maxRows)).ToArray();
        residual = Enumerable.Range(0, config.NLayer + 1).Select(_ => new T[maxRows * C]).ToArray();
        finalNorm = new T[maxRows * C];
        finalInv = new T[maxRows];
        logits = new T[checked(maxRows * V)];
        logitSlope = new T[maxRows * V];
        probabilities = new T[maxRows * V];
        rowLoss = new double[maxRows];
        tokens = new int[maxRows];
        targets = new int[maxRows];
        dx = new T[maxRows * C];
        dNorm = new T[maxRows * C];
        dQkv = new T[maxRows * Qkv];
        dY = new T[maxRows * C];
        dUp = new T[maxRows * Mlp];
        dLogits = new T[maxRows * V];
        dLambdaQ = new T[maxRows * H];
        dLambdaK = new T[maxRows * Hkv];
        dProjected = new T[laplacian is not null && config.TaumodeOrDefault.ProjectionDim > 0 ? maxRows * Heads * F : 0];
    }

    public ModelConfig Config => config;
    public ParameterLayout Layout { get; }
    public int MaxSequences { get; }
    public int SequenceLength => SeqLen;

    /// <summary>Every weight, in <see cref="Layout"/>.</summary>
    public T[] Parameters { get; }

    /// <summary>∂loss/∂weights after <see cref="Backward"/>, in <see cref="Layout"/>.</summary>
    public T[] Gradients { get; }

    /// <summary>The logits of every position of the last forward, [rows, vocab].</summary>
    public ReadOnlySpan<T> Logits => logits.AsSpan(0, rows * V);

    public void LoadWeights(ModelWeights weights)
    {
        var flat = new float[Layout.Count];
        Layout.CopyFrom(weights, flat);
        for (int i = 0; i < flat.Length; i++) Parameters[i] = T.CreateTruncating(flat[i]);
    }

    /// <summary>
    /// The whole forward pass over sequences of <see cref="SequenceLength"/> tokens laid end to end; each position of each
    /// sequence predicts its target. Returns the mean cross-entropy over all positions.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputTokens, ReadOnlySpan<int> targetTokens)
    {
        if (inputTokens.Length == 0 || inputTokens.Length % SeqLen != 0 || inputTokens.Length > MaxSequences * SeqLen)
            throw new ArgumentException($"{inputTokens.Length} tokens are not 1 to {MaxSequences} sequences of {SeqLen}");
        if (targetTokens.Length != inputTokens.Length) throw new ArgumentException("one target per input token");
        foreach (int t in inputTokens) if ((uint)t >= (uint)V) throw new TokenOutOfRangeException(t, V);
        foreach (int t in targetTokens) if ((uint)t >= (uint)V) throw new TokenOutOfRangeException(t, V);
        rows = inputTokens.Length;
        int sequences = rows / SeqLen;
        inputTokens.CopyTo(tokens);
        targetTokens.CopyTo(targets);
        TransposeWeights();

        // x = wte[token], no norm after the embedding
        for (int r = 0; r < rows; r++) Parameters.AsSpan(Layout.Embedding.Offset + tokens[r] * C, C).CopyTo(Row(residual[0], r, C));

        for (int l = 0; l < config.NLayer; l++)
        {
            var a = layers[l];
            var w = Layout.Layers[l];
            T[] x = residual[l], next = residual[l + 1];

            // attention: h = rms(x); q, k, v = clamp(W h, −5, 5), one product for the three (their weights are adjacent)
            RmsNormRows(x, a.Norm1, a.Inv1);
            Linear(a.Norm1, w.Qkv, a.QkvRaw);
            Kernels.Clamp(a.QkvRaw.AsSpan(0, rows * Qkv), T.CreateTruncating(-Kernels.QkvLimit), T.CreateTruncating(Kernels.QkvLimit), a.Qkv.AsSpan(0, rows * Qkv));

            // q, k = rms(rope(·, pos)) per head vector (tau with λ before RoPE: rms alone); v gets neither
            ForRows(r =>
            {
                int pos = r % SeqLen;
                for (int head = 0; head < Heads; head++)
                {
                    var vector = a.Qkv.AsSpan(r * Qkv + head * D, D);
                    if (config.RotatesHeads) Kernels.Rope(vector, ropeCos.AsSpan(pos * D / 2, D / 2), ropeSin.AsSpan(pos * D / 2, D / 2));
                    a.HeadInv[r * Heads + head] = Kernels.RmsNorm(vector, vector);
                }
            });

            // tau: the λ of every q and k head vector (projected: z = P x) against the Laplacian, keeping L·x and E, τ for
            // the backward; with learned temperatures, times the gain e^(a_g) of its kv head
            if (laplacian is not null)
            {
                if (w.LambdaLogGain is { } logGain) LambdaHeads.Gains<T>(Parameters.AsSpan(logGain.Offset, Hkv), a.Gains);
                ForRows(r =>
                {
                    for (int head = 0; head < Heads; head++)
                    {
                        var (query, g, at) = LambdaSlot(r, head);
                        ReadOnlySpan<T> x = a.Qkv.AsSpan(r * Qkv + head * D, D);
                        if (ProjectionOf(w, query) is { } projection)
                        {
                            var z = a.Projected.AsSpan((r * Heads + head) * F, F);
                            LambdaHeads.Project<T>(Parameters.AsSpan(projection.Offset, projection.Length), x, z);
                            x = z;
                        }
                        T lambda = T.CreateTruncating(TauLambda.Lambda(x, laplacian, taumode, a.LaplacianTimes.AsSpan((r * Heads + head) * F, F),
                            out (query ? a.PartsQ : a.PartsK)[at]));
                        (query ? a.LambdaQ : a.LambdaK)[at] = w.LambdaLogGain is null ? lambda : lambda * a.Gains[g];
                    }
                });
            }

            // head h attends with kv head ⌊h / (H/Hkv)⌋ to the positions ≤ its own: y_h = Σ_j softmax_j(score) v_j
            ForEach(sequences * H, i =>
            {
                int b = i / H, h = i % H, g = config.KvHeadOf(h);
                var (values, weights, y) = (Values(a.Qkv, b, g), AttentionWeights(a, b, h), HeadOf(a.Y, b, h));
                if (laplacian is not null)
                    Attention.TauForward(LambdaOf(a.LambdaQ, b, h, H), LambdaOf(a.LambdaK, b, g, Hkv), temperature, values, weights, y,
                        T.CreateTruncating(config.TaumodeOrDefault.RecencySlope(g, Hkv)));
                else
                    Attention.DotProductForward(Queries(a.Qkv, b, h), Keys(a.Qkv, b, g), values, weights, y, Scratch());
            });

            // x = x + Wproj · concat(y_0 … y_{H−1})
            Linear(a.Y, w.AttentionProjection, a.Mid);
            TensorPrimitives.Add(x.AsSpan(0, rows * C), a.Mid.AsSpan(0, rows * C), a.Mid.AsSpan(0, rows * C));

            // MLP: x = x + Wfc2 · relu(Wfc1 · rms(x))²
            RmsNormRows(a.Mid, a.Norm2, a.Inv2);
            Linear(a.Norm2, w.MlpUp, a.Up);
            Kernels.ReluSquared(a.Up.AsSpan(0, rows * Mlp), a.Act.AsSpan(0, rows * Mlp));
            Linear(a.Act, w.MlpDown, next);
            TensorPrimitives.Add(a.Mid.AsSpan(0, rows * C), next.AsSpan(0, rows * C), next.AsSpan(0, rows * C));
        }

        // logits = clamp(Wlm · rms(x), −50, 50); with a softcap s > 0, then clamp(s·tanh(logits / s), −50, 50)
        RmsNormRows(residual[config.NLayer], finalNorm, finalInv);
        Linear(finalNorm, Layout.LmHead, logits);
        ForRows(r => Ops.CapLogits<T>(Row(logits, r, V), config.Softcap, Row(logitSlope, r, V)));

        // loss = mean over positions of −log softmax(logits)[target]
        ForRows(r => rowLoss[r] = Ops.CrossEntropy<T>(Row(logits, r, V), targets[r], Row(probabilities, r, V)));
        forwardDone = true;
        double total = 0;
        for (int r = 0; r < rows; r++) total += rowLoss[r];
        return total / rows;
    }

    /// <summary>Fills <see cref="Gradients"/> with ∂(mean loss of the last forward)/∂weights, walking the forward backwards.</summary>
    public void Backward()
    {
        if (!forwardDone) throw new InvalidOperationException("Backward needs a Forward first");
        forwardDone = false;
        int sequences = rows / SeqLen;
        T scale = T.One / T.CreateTruncating(rows);

        // ∂loss/∂logits = (softmax − onehot(target)) / positions, times the slope of the caps and clamps
        ForRows(r =>
        {
            Ops.CrossEntropyBackward<T>(Row(probabilities, r, V), targets[r], scale, Row(dLogits, r, V));
            TensorPrimitives.Multiply(Row(dLogits, r, V), Row(logitSlope, r, V), Row(dLogits, r, V));
        });

        // logits = Wlm · rms(x)
        LinearBackward(finalNorm, Layout.LmHead, dLogits, dNorm);
        ForRows(r => Ops.RmsNormBackward<T>(Row(finalNorm, r, C), finalInv[r], Row(dNorm, r, C), Row(dx, r, C)));

        for (int l = config.NLayer - 1; l >= 0; l--)
        {
            var a = layers[l];
            var w = Layout.Layers[l];

            // MLP: x_out = mid + Wfc2 · relu(Wfc1 · rms(mid))²; dx holds ∂loss/∂x_out and becomes ∂loss/∂mid
            LinearBackward(a.Act, w.MlpDown, dx, dUp);
            Ops.ReluSquaredBackward<T>(a.Up.AsSpan(0, rows * Mlp), dUp.AsSpan(0, rows * Mlp), dUp.AsSpan(0, rows * Mlp));
            LinearBackward(a.Norm2, w.MlpUp, dUp, dNorm);
            ForRows(r => Ops.RmsNormBackward<T>(Row(a.Norm2, r, C), a.Inv2[r], Row(dNorm, r, C), Row(dx, r, C), accumulate: true));

            // mid = x + Wproj · y
            LinearBackward(a.Y, w.AttentionProjection, dx, dY);

            // attention: back to q, k, v (tau: to λq, λk); the heads of a kv group run in order, adding into its dk, dv
            int group = config.QueryGroup;
            ForEach(sequences * Hkv, i =>
            {
                int b = i / Hkv, g = i % Hkv;
                var scratch = Scratch();
                for (int h = g * group; h < (g + 1) * group; h++)
                {
                    bool first = h == g * group;
                    var (weights, dy, dValues) = (AttentionWeights(a, b, h), HeadOf(dY, b, h), Values(dQkv, b, g));
                    if (laplacian is not null)
                        Attention.TauBackward(LambdaOf(a.LambdaQ, b, h, H), LambdaOf(a.LambdaK, b, g, Hkv), temperature, Values(a.Qkv, b, g),
                            weights, dy, LambdaOf(dLambdaQ, b, h, H), LambdaOf(dLambdaK, b, g, Hkv), dValues, !first, scratch);
                    else
                        Attention.DotProductBackward(Queries(a.Qkv, b, h), Keys(a.Qkv, b, g), Values(a.Qkv, b, g), weights, dy,
                            Queries(dQkv, b, h), Keys(dQkv, b, g), dValues, !first, scratch);
                }
            });

            // tau: λ = e^(a_g)·E/(E + τ) of each head vector or its projection z = P x, τ held constant (see
            // TauLambda.LambdaBackward): ∂a_g = Σ λ·∂λ over the λs of kv group g; ∂x = Pᵀ ∂z; ∂P = Σ ∂z xᵀ
            if (laplacian is not null)
            {
                if (w.LambdaLogGain is { } logGain) LogGainGradients(a, sequences, Gradients.AsSpan(logGain.Offset, Hkv));
                ForRows(r =>
                {
                    for (int head = 0; head < Heads; head++)
                    {
                        var (query, g, at) = LambdaSlot(r, head);
                        double dLambda = double.CreateTruncating((query ? dLambdaQ : dLambdaK)[at] * (w.LambdaLogGain is null ? T.One : a.Gains[g]));
                        var parts = (query ? a.PartsQ : a.PartsK)[at];
                        var lx = a.LaplacianTimes.AsSpan((r * Heads + head) * F, F);
                        var dHead = dQkv.AsSpan(r * Qkv + head * D, D);
                        if (ProjectionOf(w, query) is not { } projection)
                        {
                            TauLambda.LambdaBackward<T>(a.Qkv.AsSpan(r * Qkv + head * D, D), lx, parts, taumode.Eps, dLambda, dHead);
                            continue;
                        }
                        var dz = dProjected.AsSpan((r * Heads + head) * F, F);
                        TauLambda.LambdaBackward<T>(a.Projected.AsSpan((r * Heads + head) * F, F), lx, parts, taumode.Eps, dLambda, dz);
                        dHead.Clear();
                        var p = Parameters.AsSpan(projection.Offset, projection.Length);
                        for (int f = 0; f < F; f++) TensorPrimitives.MultiplyAdd(p.Slice(f * D, D), dz[f], dHead, dHead);
                    }
                });
                if (w.LambdaQueryProjection is { } queryProjection) ProjectionGradients(a, queryProjection, heads: 0..H);
                if (w.LambdaKeyProjection is { } keyProjection) ProjectionGradients(a, keyProjection, heads: H..Heads);
            }

            // q, k = rms(rope(·)): back through the norm, then the rotation
            ForRows(r =>
            {
                int pos = r % SeqLen;
                for (int head = 0; head < Heads; head++)
                {
                    var grad = dQkv.AsSpan(r * Qkv + head * D, D);
                    Ops.RmsNormBackward<T>(a.Qkv.AsSpan(r * Qkv + head * D, D), a.HeadInv[r * Heads + head], grad, grad);
                    if (config.RotatesHeads) Ops.RopeBackward(grad, ropeCos.AsSpan(pos * D / 2, D / 2), ropeSin.AsSpan(pos * D / 2, D / 2));
                }
            });

            // q, k, v = clamp(W h, −5, 5); h = rms(x); dx becomes ∂loss/∂x of the layer's input
            Ops.ClampBackward<T>(a.QkvRaw.AsSpan(0, rows * Qkv), T.CreateTruncating(-Kernels.QkvLimit), T.CreateTruncating(Kernels.QkvLimit), dQkv.AsSpan(0, rows * Qkv), dQkv.AsSpan(0, rows * Qkv));
            LinearBackward(a.Norm1, w.Qkv, dQkv, dNorm);
            ForRows(r => Ops.RmsNormBackward<T>(Row(a.Norm1, r, C), a.Inv1[r], Row(dNorm, r, C), Row(dx, r, C), accumulate: true));
        }

        // x = wte[token]: each position adds its gradient to its token's row (in position order)
        var embedding = Gradients.AsSpan(Layout.Embedding.Offset, Layout.Embedding.Length);
        embedding.Clear();
        for (int r = 0; r < rows; r++)
        {
            var target = embedding.Slice(tokens[r] * C, C);
            TensorPrimitives.Add(target, Row(dx, r, C), target);
        }
    }

    /// <summary>
    /// Where head vector <paramref name="head"/> of row r (query heads first, then kv heads) keeps its λ: its kv head g,
    /// and its index in λq or λk, both [sequence, head, position].
    /// </summary>
    private (bool Query, int KvHead, int At) LambdaSlot(int r, int head)
    {
        int b = r / SeqLen, t = r % SeqLen;
        return head < H ? (true, config.KvHeadOf(head), (b * H + head) * SeqLen + t) : (false, head - H, (b * Hkv + head - H) * SeqLen + t);
    }

    private static ParameterTensor? ProjectionOf(LayerParameters w, bool query) => query ? w.LambdaQueryProjection : w.LambdaKeyProjection;

    /// <summary>∂a_g = Σ λ·∂λ over every λq of kv group g and every λk of kv head g (λ = e^(a_g)·λ₀), summed in one fixed order.</summary>
    private void LogGainGradients(Layer a, int sequences, Span<T> gradients)
    {
        for (int g = 0; g < Hkv; g++)
        {
            T sum = T.Zero;
            for (int b = 0; b < sequences; b++)
            {
                for (int h = g * config.QueryGroup; h < (g + 1) * config.QueryGroup; h++)
                    sum += TensorPrimitives.Dot<T>(LambdaOf(a.LambdaQ, b, h, H), LambdaOf(dLambdaQ, b, h, H));
                sum += TensorPrimitives.Dot<T>(LambdaOf(a.LambdaK, b, g, Hkv), LambdaOf(dLambdaK, b, g, Hkv));
            }
            gradients[g] = sum;
        }
    }

    /// <summary>∂P = Σ_rows Σ_heads ∂z xᵀ for the projection shared by <paramref name="heads"/>: one product per head, added in head order.</summary>
    private void ProjectionGradients(Layer a, ParameterTensor projection, Range heads)
    {
        var gradient = Matrix<T>.Dense(Gradients, F, D, projection.Offset);
        var (first, end) = heads.GetOffsetAndLength(Heads);
        for (int head = first; head < first + end; head++)
        {
            var dz = new Matrix<T>(dProjected, head * F, rows, F, Heads * F, 1);
            var x = new Matrix<T>(a.Qkv, head * D, rows, D, Qkv, 1);
            Gemm.Multiply(dz.Transposed, x, gradient, accumulate: head != first, gemmParallel);
        }
    }

    /// <summary>output[rows, out] = input[rows, in] · Wᵀ for the [out, in] weight <paramref name="weight"/>.</summary>
    private void Linear(T[] input, ParameterTensor weight, T[] output) =>
        Gemm.Multiply(Matrix<T>.Dense(input, rows, weight.Cols), Matrix<T>.Dense(transposed, weight.Cols, weight.Rows, weight.Offset),
            Matrix<T>.Dense(output, rows, weight.Rows), accumulate: false, gemmParallel);

    /// <summary>∂W = ∂outputᵀ · input (written: each weight is used once per pass) and ∂input = ∂output · W.</summary>
    private void LinearBackward(T[] input, ParameterTensor weight, T[] dOutput, T[] dInput)
    {
        var gradOut = Matrix<T>.Dense(dOutput, rows, weight.Rows);
        Gemm.Multiply(gradOut.Transposed, Matrix<T>.Dense(input, rows, weight.Cols), Matrix<T>.Dense(Gradients, weight.Rows, weight.Cols, weight.Offset),
            accumulate: false, gemmParallel);
        Gemm.Multiply(gradOut, Matrix<T>.Dense(Parameters, weight.Rows, weight.Cols, weight.Offset), Matrix<T>.Dense(dInput, rows, weight.Cols),
            accumulate: false, gemmParallel);
    }

    private void TransposeWeights()
    {
        var linear = linearLayers;
        ForEach(linear.Length, i => Gemm.Transpose(
            Matrix<T>.Dense(Parameters, linear[i].Rows, linear[i].Cols, linear[i].Offset),
            Matrix<T>.Dense(transposed, linear[i].Cols, linear[i].Rows, linear[i].Offset)));
    }

    private void RmsNormRows(T[] x, T[] y, T[] inverse) => ForRows(r => inverse[r] = Kernels.RmsNorm<T>(Row(x, r, C), Row(y, r, C)));

    private void ForRows(Action<int> body)
    {
        int chunks = (rows + RowsPerChunk - 1) / RowsPerChunk;
        ForEach(chunks, chunk =>
        {
            for (int r = chunk * RowsPerChunk, end = Math.Min(rows, r + RowsPerChunk); r < end; r++) body(r);
        });
    }

    private void ForEach(int count, Action<int> body)
    {
        if (gemmParallel is null)
            for (int i = 0; i < count; i++) body(i);
        else
            Parallel.For(0, count, parallel, body);
    }

    private T[] Scratch()
    {
        int length = Attention.ScratchLength(SeqLen, D);
        var scratch = threadScratch;
        if (scratch is null || scratch.Length < length) threadScratch = scratch = new T[length];
        return scratch;
    }

    private static Span<T> Row(T[] buffer, int row, int width) => buffer.AsSpan(row * width, width);

    /// <summary>The [SeqLen, D] views of sequence b's query head h, key head g and value head g inside [rows, q | k | v].</summary>
    private Matrix<T> Queries(T[] qkv, int b, int h) => new(qkv, b * SeqLen * Qkv + h * D, SeqLen, D, Qkv, 1);

    private Matrix<T> Keys(T[] qkv, int b, int g) => new(qkv, b * SeqLen * Qkv + (H + g) * D, SeqLen, D, Qkv, 1);

    private Matrix<T> Values(T[] qkv, int b, int g) => new(qkv, b * SeqLen * Qkv + (H + Hkv + g) * D, SeqLen, D, Qkv, 1);

    private Matrix<T> HeadOf(T[] y, int b, int h) => new(y, b * SeqLen * C + h * D, SeqLen, D, C, 1);

    private Matrix<T> AttentionWeights(Layer a, int b, int h) => Matrix<T>.Dense(a.Weights, SeqLen, SeqLen, (b * H + h) * SeqLen * SeqLen);

    private Span<T> LambdaOf(T[] lambdas, int b, int head, int headsPerRow) => lambdas.AsSpan((b * headsPerRow + head) * SeqLen, SeqLen);

    /// <summary>What one block keeps from its forward for the backward.</summary>
    private sealed class Layer(Gpt<T> m, int sequences, int maxRows)
    {
        public readonly T[] Norm1 = new T[maxRows * m.C], Inv1 = new T[maxRows];
        public readonly T[] QkvRaw = new T[maxRows * m.Qkv], Qkv = new T[maxRows * m.Qkv], HeadInv = new T[maxRows * m.Heads];
        public readonly T[] LambdaQ = new T[m.laplacian is null ? 0 : maxRows * m.H], LambdaK = new T[m.laplacian is null ? 0 : maxRows * m.Hkv];
        public readonly LambdaParts[] PartsQ = new LambdaParts[m.laplacian is null ? 0 : maxRows * m.H], PartsK = new LambdaParts[m.laplacian is null ? 0 : maxRows * m.Hkv];
        public readonly T[] LaplacianTimes = new T[m.laplacian is null ? 0 : maxRows * m.Heads * m.F];
        public readonly T[] Projected = new T[m.laplacian is null || m.config.TaumodeOrDefault.ProjectionDim == 0 ? 0 : maxRows * m.Heads * m.F];
        public readonly T[] Gains = new T[m.Hkv];
        public readonly T[] Weights = new T[checked(sequences * m.H * m.SeqLen * m.SeqLen)];
        public readonly T[] Y = new T[maxRows * m.C], Mid = new T[maxRows * m.C], Norm2 = new T[maxRows * m.C], Inv2 = new T[maxRows];
        public readonly T[] Up = new T[maxRows * m.Mlp], Act = new T[maxRows * m.Mlp];
    }
}
