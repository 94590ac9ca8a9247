"""convlora_lite: Conv-LoRA (Zhong et al., ICLR 2024) for the Segment Anything Model."""
__version__ = "0.1.0"
