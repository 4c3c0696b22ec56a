using TauCluster.Engine;

namespace TauCluster.Peer;

/// <summary>
/// The llama-architecture peer of the tau paper-shape model (PaperModel in Grains/ModelStore.cs): 6 layers, n_embd 384,
/// one head of dimension 384 with one kv head, vocabulary 50257, rope base 10000, F32 weights, or F16/BF16 matrices with F32 norm gains (as llama.cpp's converters write them). Its SwiGLU feed-forward
/// width is 1024 = 8C/3, so its three feed-forward matrices (3·F·C) hold exactly the tau MLP's two (2·4C·C) and a
/// decode step reads the same weight bytes, apart from the RMSNorm gains that tau's parameterless norms lack.
/// </summary>
public static class PeerModel
{
    public const int NEmbd = 384;
    public const int NLayer = 6;
    public const int NHead = 1;
    public const int NKvHead = 1;
    public const int FeedForward = 1024;
    public const int Vocab = 50257;
    public const float RopeBase = 10000f;
    public const float NormEpsilon = 1e-5f;
    public const int TrainContext = 131072;
    public const int Seed = 20260101;

    /// <summary>Bumped whenever the file's contents change, so a GGUF left from an earlier build is not reused.</summary>
    public const int FormatRevision = 2;

    private const int HeadDim = NEmbd / NHead;

    /// <summary>Parameters of the GGUF: embeddings, output layer, the layers' matrices and the norm gains.</summary>
    public static long Parameters => 2L * Vocab * NEmbd + NLayer * (LayerMatrixParameters + 2L * NEmbd) + NEmbd;

    /// <summary>
    /// Weight bytes one decode step reads: every layer matrix, the output layer, one embedding row (all of
    /// <paramref name="matrices"/>) and the norm gains (always F32).
    /// </summary>
    public static long WeightBytesPerToken(TensorDType matrices) =>
        MatrixBytesPerToken(matrices) + sizeof(float) * (NLayer * 2L * NEmbd + NEmbd);

    /// <summary>The same for the tau paper shape: 4C² attention and 2·4C·C MLP per layer, the LM head, one embedding row.</summary>
    public static long TauWeightBytesPerToken(TensorDType matrices) =>
        matrices.ElementSize() * (NLayer * (4L * NEmbd * NEmbd + 2L * 4 * NEmbd * NEmbd) + (long)Vocab * NEmbd + NEmbd);

    /// <summary>Matrix weights alone (no norm gains), per token: what must equal the tau model's.</summary>
    public static long MatrixBytesPerToken(TensorDType matrices) =>
        matrices.ElementSize() * (NLayer * LayerMatrixParameters + (long)Vocab * NEmbd + NEmbd);

    private static long LayerMatrixParameters => 4L * NEmbd * HeadDim * NHead + 3L * FeedForward * NEmbd;

    /// <summary>
    /// Writes the GGUF: seeded Gaussian weights as the tau model's are drawn (N(0, 1) embeddings, N(0, 1/in) linear
    /// layers), unit norm gains, and a placeholder SentencePiece-style vocabulary so that llama.cpp loads it; the
    /// benchmark feeds token ids straight into its batches and never tokenizes. The 2-D weights are stored as
    /// <paramref name="matrices"/>, drawn from the same stream whatever it is, so the variants differ only by rounding.
    /// Returns the file's size.
    /// </summary>
    public static long Write(string path, TensorDType matrices)
    {
        var g = new GgufWriter();
        g.Add("general.architecture", "llama");
        g.Add("general.name", "tauformer-paper-shape-peer");
        g.Add("general.alignment", GgufWriter.Alignment);
        g.Add("general.file_type", matrices switch   // llama_ftype, which llama.cpp reports; each tensor carries its own type
        {
            TensorDType.F32 => 0u, TensorDType.F16 => 1u, TensorDType.BF16 => 32u,   // ALL_F32, MOSTLY_F16, MOSTLY_BF16
            _ => throw new ArgumentOutOfRangeException(nameof(matrices)),
        });
        g.Add("llama.context_length", (uint)TrainContext);
        g.Add("llama.embedding_length", (uint)NEmbd);
        g.Add("llama.block_count", (uint)NLayer);
        g.Add("llama.feed_forward_length", (uint)FeedForward);
        g.Add("llama.attention.head_count", (uint)NHead);
        g.Add("llama.attention.head_count_kv", (uint)NKvHead);
        g.Add("llama.attention.layer_norm_rms_epsilon", NormEpsilon);
        g.Add("llama.rope.freq_base", RopeBase);
        g.Add("llama.rope.dimension_count", (uint)HeadDim);
        g.Add("llama.vocab_size", (uint)Vocab);

        // Placeholder vocabulary: <unk>, <s>, </s>, the newline byte (llama.cpp looks it up in an SPM vocabulary), then
        // t4 … t50256, all distinct.
        var tokens = new string[Vocab];
        var scores = new float[Vocab];
        var types = new int[Vocab];
        for (int i = 0; i < Vocab; i++)
        {
            tokens[i] = i switch { 0 => "<unk>", 1 => "<s>", 2 => "</s>", 3 => "<0x0A>", _ => $"t{i}" };
            scores[i] = -i;
            types[i] = i switch { 0 => 2, 1 or 2 => 3, 3 => 6, _ => 1 };   // UNKNOWN, CONTROL, BYTE, NORMAL
        }
        g.Add("tokenizer.ggml.model", "llama");
        g.Add("tokenizer.ggml.tokens", tokens);
        g.Add("tokenizer.ggml.scores", scores);
        g.Add("tokenizer.ggml.token_type", types);
        g.Add("tokenizer.ggml.unknown_token_id", 0u);
        g.Add("tokenizer.ggml.bos_token_id", 1u);
        g.Add("tokenizer.ggml.eos_token_id", 2u);
        g.Add("tokenizer.ggml.add_bos_token", false);
        g.Add("tokenizer.ggml.add_eos_token", false);

        var rng = new Random(Seed);
        RowFill Gaussian(double std) => (row, _) =>
        {
            for (int i = 0; i < row.Length; i++)
            {
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                row[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
        };
        RowFill ones = (row, _) => row.Fill(1f);
        double linear = 1.0 / Math.Sqrt(NEmbd);

        // Dimensions innermost first: a PyTorch [out, in] weight is [in, out].
        g.AddTensor("token_embd.weight", [NEmbd, Vocab], Gaussian(1.0), matrices);
        for (int l = 0; l < NLayer; l++)
        {
            g.AddTensor($"blk.{l}.attn_norm.weight", [NEmbd], ones);
            g.AddTensor($"blk.{l}.attn_q.weight", [NEmbd, HeadDim * NHead], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.attn_k.weight", [NEmbd, HeadDim * NKvHead], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.attn_v.weight", [NEmbd, HeadDim * NKvHead], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.attn_output.weight", [HeadDim * NHead, NEmbd], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.ffn_norm.weight", [NEmbd], ones);
            g.AddTensor($"blk.{l}.ffn_gate.weight", [NEmbd, FeedForward], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.ffn_up.weight", [NEmbd, FeedForward], Gaussian(linear), matrices);
            g.AddTensor($"blk.{l}.ffn_down.weight", [FeedForward, NEmbd], Gaussian(1.0 / Math.Sqrt(FeedForward)), matrices);
        }
        g.AddTensor("output_norm.weight", [NEmbd], ones);
        g.AddTensor("output.weight", [NEmbd, Vocab], Gaussian(linear), matrices);
        return g.Write(path);
    }
}
